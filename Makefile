# moe: build the library, the command and the tests.
#   make            optimized for this machine (-march=native) into build/
#   make test       build and run every test (C and PyTorch references)
#   make demo       the main job on a built-in default
#   make portable   no -march=native, into build/portable/, and run the tests
#   make sanitize   ASan + UBSan build into build/sanitize/, and run the tests
#   make deps       install what the tests need (Debian packages)

CC      ?= cc
B       ?= build
ARCH    ?= -march=native
OPT     ?= -O2
SAN     ?=
CFLAGS_ALL = -std=c11 $(OPT) $(ARCH) -g -Wall -Wextra -Wshadow -fPIC -fopenmp -fno-math-errno \
             -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(SAN) $(CFLAGS)
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

.PHONY: all test demo portable sanitize deps clean bench
all: $(B)/libmoe.a $(B)/libmoe.so $(B)/moe $(TEST_BIN)

$(B)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX512) -MMD -MP -c $< -o $@
$(B)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX2) -MMD -MP -c $< -o $@
$(B)/%_avx512vnni.o: %_avx512vnni.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX512) -mavx512vnni -MMD -MP -c $< -o $@
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

test: all
	@B=$(B) SANITIZE_PRELOAD="$(SANITIZE_PRELOAD)" bash tests/run.sh

demo: all
	$(B)/moe demo

bench: all
	$(B)/moe bench layer

portable:
	$(MAKE) B=build/portable ARCH= test

sanitize:
	$(MAKE) B=build/sanitize OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  SANITIZE_PRELOAD="$$($(CC) -print-file-name=libasan.so)" test

deps:
	bash scripts/deps.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
