/* version.c: the library's version (moe_version, moe_version_number), the
 * numbers of include/moe.h as compiled into libmoe.
 * Not for: anything else; the soname and moe.pc take the same numbers from
 * the Makefile, which reads them from moe.h. */
#include "moe.h"

const char *moe_version(void) { return MOE_VERSION_STRING; }

int moe_version_number(void) { return MOE_VERSION_NUMBER; }
