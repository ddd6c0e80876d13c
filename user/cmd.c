/* What every subcommand shares: the one-line error a user sees. */
#include <stdarg.h>
#include <stdio.h>

#include "cmd.h"

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("seams: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
