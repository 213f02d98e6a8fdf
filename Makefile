# moe: build the library, the command and the tests.
#   make            optimized for this machine (-march=native) into build/
#   make test       build and run every test (C and PyTorch references)
#   make demo       the main job on a built-in default
#   make portable   no -march=native, into build/portable/, and run the tests
#   make sanitize   ASan + UBSan build into build/sanitize/, and run the tests
#   make deps       install what the tests need (Debian packages)
#   make fuzz       libFuzzer harnesses (clang, ASan + UBSan) into build/fuzz/,
#                   and their seed corpora (docs/TESTING.md)
#   make fuzz-smoke make fuzz, then each harness for FUZZ_TIME (30) seconds

CC      ?= cc
B       ?= build
ARCH    ?= -march=native
OPT     ?= -O2
SAN     ?=
# SIMD_SAN: the sanitizers of the SIMD kernel files (below), $(SAN) unless set
SIMD_SAN ?= $(SAN)
CFLAGS_BASE = -std=c11 $(OPT) $(ARCH) -g -Wall -Wextra -Wshadow -fPIC -fopenmp -fno-math-errno \
             -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc
CFLAGS_ALL = $(CFLAGS_BASE) $(SAN) $(CFLAGS)
CFLAGS_SIMD = $(CFLAGS_BASE) $(SIMD_SAN) $(CFLAGS)
LDLIBS_ALL = -fopenmp -lm $(SAN) $(LDLIBS)
# Files named *_avx512.c / *_avx512vnni.c / *_avx2.c hold SIMD kernels chosen
# at run time (*_avx512vnni.c: the AVX512 flags plus VNNI).
AVX512  = -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
AVX2    = -mavx2 -mfma -mf16c

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c) $(wildcard bench/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
# tests/fuzz/fuzz_NAME.c: one libFuzzer harness per parser of untrusted bytes;
# the normal build links each with replay_main.c (tests/run.sh replays the
# crash inputs kept in tests/fuzz/regressions/NAME through it)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
REPLAY_BIN := $(FUZZ_NAMES:%=$(B)/tests/fuzz/replay_%)
FUZZ_HDR := tests/fuzz/fuzz_util.h tests/fuzz/fuzz_train.h
FUZZ_B   ?= build/fuzz
FUZZ_CC  ?= clang
FUZZ_TIME ?= 30

.PHONY: all test demo portable sanitize deps clean bench fuzz fuzz-build fuzz-smoke
all: $(B)/libmoe.a $(B)/libmoe.so $(B)/moe $(TEST_BIN) $(REPLAY_BIN)

$(B)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SIMD) $(AVX512) -MMD -MP -c $< -o $@
$(B)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SIMD) $(AVX2) -MMD -MP -c $< -o $@
$(B)/%_avx512vnni.o: %_avx512vnni.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SIMD) $(AVX512) -mavx512vnni -MMD -MP -c $< -o $@
$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(B)/libmoe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(B)/libmoe.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS_ALL)
$(B)/moe: $(CLI_OBJ) $(B)/libmoe.a
	$(CC) -o $@ $(CLI_OBJ) $(B)/libmoe.a $(LDLIBS_ALL)
$(B)/tests/%: tests/%.c $(B)/libmoe.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(B)/libmoe.a $(LDLIBS_ALL)

$(B)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(FUZZ_HDR) $(B)/libmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< tests/fuzz/replay_main.c $(B)/libmoe.a $(LDLIBS_ALL)

# The fuzz build: the library with coverage (fuzzer-no-link), ASan and UBSan
# (every UBSan report fatal), FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION (the
# checkpoint reader then ignores a wrong checksum); each harness linked with
# libFuzzer's main; the seeds written by the project's writers. The SIMD
# kernel files get no coverage instrumentation (ASan and UBSan only): clang
# takes tens of minutes per file to instrument their unrolled intrinsics for
# it, and the scalar references they equal (tests/test_quant_simd.c) have it.
fuzz:
	$(MAKE) B=$(FUZZ_B) CC=$(FUZZ_CC) OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  SIMD_SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  CFLAGS="-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Wno-pass-failed $(CFLAGS)" fuzz-build
fuzz-build: $(FUZZ_NAMES:%=$(B)/fuzz_%) $(B)/seeds/.done
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDR) $(B)/libmoe.a
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -Itests/fuzz -o $@ $< $(B)/libmoe.a $(LDLIBS_ALL)
$(B)/make_seeds: tests/fuzz/make_seeds.c $(FUZZ_HDR) $(B)/libmoe.a
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< $(B)/libmoe.a $(LDLIBS_ALL)
$(B)/seeds/.done: $(B)/make_seeds tests/fuzz/make_seeds.py
	rm -rf $(B)/seeds
	ASAN_OPTIONS=detect_leaks=0 $(B)/make_seeds $(B)/seeds
	python3 tests/fuzz/make_seeds.py $(B)/seeds
	touch $@
fuzz-smoke: fuzz
	FUZZ_B=$(FUZZ_B) bash tests/fuzz/run.sh $(FUZZ_TIME)

test: all
	@B=$(B) SANITIZE_PRELOAD="$(SANITIZE_PRELOAD)" bash tests/run.sh

demo: all
	$(B)/moe demo

bench: all
	$(B)/moe bench layer

portable:
	$(MAKE) B=build/portable ARCH= test

# With CC=clang (into build/sanitize-clang) UBSan also reports pointer
# arithmetic on NULL; the ASan runtime preloaded for the Python tests is the
# compiler's own. float-cast-overflow: GCC's undefined does not include it.
SAN_DIR = build/sanitize$(if $(findstring clang,$(CC)),-clang,)
# clang links its ASan runtime statically unless told: the shared one, as GCC
# does, so that the moe command run by the Python tests with the runtime
# preloaded does not hold two
SAN_LD = $(if $(findstring clang,$(CC)),-shared-libasan -Wl$(comma)-rpath$(comma)$(shell $(CC) -print-runtime-dir),)
comma := ,
sanitize:
	$(MAKE) B=$(SAN_DIR) OPT=-O1 LDLIBS="$(SAN_LD) $(LDLIBS)" \
	  SAN="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  SANITIZE_PRELOAD="$$(p=$$($(CC) -print-file-name=libclang_rt.asan-x86_64.so); \
	    case $$p in /*) echo $$p;; *) $(CC) -print-file-name=libasan.so;; esac)" test

deps:
	bash scripts/deps.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
