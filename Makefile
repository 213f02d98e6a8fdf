# moe: build the library, the command and the tests.
#   make            optimized for this machine (-march=native) into build/
#   make test       build and run every test (C and PyTorch references)
#   make demo       the main job on a built-in default
#   make portable   no -march=native, into build/portable/, and run the tests
#   make sanitize   ASan + UBSan build into build/sanitize/, and run the tests
#   make deps       install what the tests need (Debian packages)
#   make install    headers, libmoe.a, libmoe.so.*, moe.pc and moe into
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall
#   make fuzz       libFuzzer harnesses (clang, ASan + UBSan) into build/fuzz/,
#                   and their seed corpora (docs/TESTING.md)
#   make fuzz-smoke make fuzz, then each harness for FUZZ_TIME (30) seconds
#   MPI=1 / MPI=0   force the distributed paths (src/dist over Open MPI) on or
#                   off; by default on when mpicc is found
# Parallel by default (-j<cores>; a -j of yours wins); one line per file,
# V=1 prints the commands.

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
# zlib, liblzma, libzstd: compressed training data (src/train/decompress.c)
LDLIBS_ALL = -fopenmp -lzstd -llzma -lz -lm $(SAN) $(MPI_LIBS) $(LDLIBS)
# libmicrohttpd (Debian libmicrohttpd-dev) for `moe serve` (cli/serve.c) only:
# libmoe does not depend on it. Without it the command is built without the
# server and says so (HAVE_MHD=0 forces that).
HAVE_MHD ?= $(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo 1 || echo 0)
ifeq ($(HAVE_MHD),1)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd)
else
MHD_LIBS :=
endif
# The quantized SIMD kernels (src/quant/*_avx2.c, *_avx512vnni.c) get -g1:
# line tables, no variable locations. Their unrolled tiles under -g's
# variable tracking tripled gcc's time (mostly in induction-variable
# optimization); the machine code is the same. KERNEL_G=-g for all of it.
KERNEL_G ?= -g1
# Files named *_avx512.c / *_avx512vnni.c / *_avx2.c hold SIMD kernels chosen
# at run time (*_avx512vnni.c: the AVX512 flags plus VNNI).
AVX512  = -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
AVX2    = -mavx2 -mfma -mf16c

# MPI: src/dist/comm_mpi.c over Open MPI (flags from mpicc --showme), or the
# one-rank src/dist/comm_stub.c; nothing else of the library includes mpi.h
MPI ?= $(shell command -v mpicc >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile) -DMOE_MPI=1
MPI_LIBS   := -Wl,--push-state,--no-as-needed $(shell mpicc --showme:link) -Wl,--pop-state
DIST_OFF   := src/dist/comm_stub.c
else
MPI_CFLAGS :=
MPI_LIBS   :=
DIST_OFF   := src/dist/comm_mpi.c
endif
LIB_SRC  := $(sort $(filter-out $(DIST_OFF),$(wildcard src/*/*.c)))
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

.PHONY: all test demo portable sanitize deps clean bench install uninstall fuzz fuzz-build fuzz-smoke

# -j<cores> unless -j was given (make 4.3 hides it from MAKEFLAGS here, so
# the command line is read too); sub-makes share the top one's job slots.
NPROC := $(shell nproc 2>/dev/null || echo 1)
ifeq ($(MAKELEVEL),0)
ifeq ($(shell printf '%s ' "$$MAKEFLAGS" "$$(tr '\0' ' ' < /proc/$$PPID/cmdline 2>/dev/null)" | \
             grep -E -e '(^| )-[a-zA-Z]*j|--jobs' -e '^[a-zA-Z]*j'),)
MAKEFLAGS += -j$(NPROC)
endif
endif

# Quiet lines ("CC file") unless V=1.
V ?= 0
ifeq ($(V),0)
Q    = @
say  = @printf '  %-4s %s\n' '$(1)' '$(2)'
else
Q    =
say  =
endif

$(B)/src/dist/comm_mpi.o: CFLAGS_ALL += $(MPI_CFLAGS)

QUANT_SIMD_OBJ := $(filter $(B)/src/quant/%_avx2.o $(B)/src/quant/%_avx512vnni.o,$(LIB_OBJ))
$(QUANT_SIMD_OBJ): CFLAGS_SIMD += $(KERNEL_G)

# The slowest files (those kernels, 7-14 s each) start first, so that the
# cores finish together.
all: $(QUANT_SIMD_OBJ) $(B)/libmoe.a $(B)/libmoe.so $(B)/moe $(TEST_BIN) $(B)/libmoe_testhooks.so $(REPLAY_BIN)

# ---------------------------------------------------------------- the library
# Only the public API leaves it: everything is compiled -fvisibility=hidden and
# the declarations of include/moe*.h carry MOE_API (scripts/annotate_api.py).
# libmoe.so.X.Y.Z (soname libmoe.so.X) drops the hidden names; libmoe.a holds one
# object, all objects linked with ld -r and the hidden names made local, so
# that an internal name (gguf_find_tensor ...) cannot clash with another
# library's. The C tests call internal functions: they link libmoe_internal.a,
# the plain objects; the Python tests call a few through libmoe_testhooks.so.
# tests/test_symbols.py and tests/test_install.py check all of this.
CFLAGS_ALL += -fvisibility=hidden
CFLAGS_SIMD += -fvisibility=hidden
version_part = $(shell sed -n 's/^\#define MOE_VERSION_$(1) *\([0-9]*\).*/\1/p' include/moe.h)
MOE_MAJOR := $(call version_part,MAJOR)
MOE_VER   := $(MOE_MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME    := libmoe.so.$(MOE_MAJOR)

$(B)/libmoe_internal.a: $(LIB_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^
$(B)/libmoe.o: $(LIB_OBJ)
	$(call say,LD,$@)
	$(Q)$(LD) -r -o $@ $^
	$(Q)objcopy --localize-hidden $@
$(B)/libmoe.a: $(B)/libmoe.o
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^
$(B)/libmoe.so.$(MOE_VER): $(LIB_OBJ)
	$(call say,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LDLIBS_ALL)
$(B)/libmoe.so: $(B)/libmoe.so.$(MOE_VER)
	$(Q)ln -sf libmoe.so.$(MOE_VER) $(B)/$(SONAME)
	$(Q)ln -sf $(SONAME) $@
$(B)/libmoe_testhooks.so: $(B)/tests/testhooks.o $(B)/libmoe_internal.a
	$(call say,LD,$@)
	$(Q)$(CC) -shared -o $@ $^ $(LDLIBS_ALL)
$(B)/tests/testhooks.o: tests/testhooks.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
install: $(B)/libmoe.a $(B)/libmoe.so $(B)/moe
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 644 include/moe.h include/moe_infer.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(B)/libmoe.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/libmoe.so.$(MOE_VER) $(DESTDIR)$(LIBDIR)/
	ln -sf libmoe.so.$(MOE_VER) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmoe.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(MOE_VER)|' moe.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/moe.pc
	install -m 755 $(B)/moe $(DESTDIR)$(BINDIR)/
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/moe.h $(DESTDIR)$(INCLUDEDIR)/moe_infer.h \
	  $(DESTDIR)$(LIBDIR)/libmoe.a $(DESTDIR)$(LIBDIR)/libmoe.so $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libmoe.so.$(MOE_VER) $(DESTDIR)$(LIBDIR)/pkgconfig/moe.pc $(DESTDIR)$(BINDIR)/moe

$(B)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_SIMD) $(AVX512) -MMD -MP -c $< -o $@
$(B)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_SIMD) $(AVX2) -MMD -MP -c $< -o $@
$(B)/%_avx512vnni.o: %_avx512vnni.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_SIMD) $(AVX512) -mavx512vnni -MMD -MP -c $< -o $@
$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

ifneq ($(HAVE_MHD),1)
$(B)/cli/serve.o: CFLAGS_ALL += -DMOE_NO_HTTP
endif
$(B)/moe: $(CLI_OBJ) $(B)/libmoe.a
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $(CLI_OBJ) $(B)/libmoe.a $(MHD_LIBS) $(LDLIBS_ALL)
$(B)/tests/%: tests/%.c $(B)/libmoe_internal.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(B)/libmoe_internal.a $(LDLIBS_ALL)

$(B)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(FUZZ_HDR) $(B)/libmoe_internal.a
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< tests/fuzz/replay_main.c $(B)/libmoe_internal.a $(LDLIBS_ALL)

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
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDR) $(B)/libmoe_internal.a
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -Itests/fuzz -o $@ $< $(B)/libmoe_internal.a $(LDLIBS_ALL)
$(B)/make_seeds: tests/fuzz/make_seeds.c $(FUZZ_HDR) $(B)/libmoe_internal.a
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< $(B)/libmoe_internal.a $(LDLIBS_ALL)
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

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(B)/tests/testhooks.d
