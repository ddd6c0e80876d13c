/* Names from the kernel made fit for JSON: a process name cut inside a
 * UTF-8 character, and cgroup names with bytes that are not UTF-8. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgname.h"

static void test_utf8_clean(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "", "" },
		{ "postgres", "postgres" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },                      /* é kept */
		{ "\xe2\x82\xac\xf0\x9f\x98\x80", "\xe2\x82\xac\xf0\x9f\x98\x80" }, /* € and an emoji */
		/* comm keeps 15 bytes: a character cut at the end goes */
		{ "seams-utf8-tes\xc3", "seams-utf8-tes" },
		{ "seams-utf8-t\xe2\x82", "seams-utf8-t" },
		{ "seams-utf8-\xf0\x9f\x98", "seams-utf8-" },
		{ "\xc3", "" },
		/* anything else that is not UTF-8 becomes '?' */
		{ "a\xc3z", "a?z" },              /* lead byte with no continuation */
		{ "a\xa9z", "a?z" },              /* stray continuation byte */
		{ "a\xa9", "a?" },                /* stray continuation at the end */
		{ "\xff\xfe", "??" },
		{ "\xc0\xafx", "??x" },           /* overlong '/' */
		{ "\xe0\x80\xafx", "???x" },      /* overlong, three bytes */
		{ "\xed\xa0\x80x", "???x" },      /* UTF-16 surrogate */
		{ "\xf4\x90\x80\x80x", "????x" }, /* past U+10FFFF */
		{ "\xf5\x80", "??" },
		{ "\xc3\xc3\xa9", "?\xc3\xa9" },  /* a cut character before a whole one */
		/* a cut that is not valid so far is not a cut character */
		{ "x\xe0\x80", "x??" },
		{ "x\xed\xa0", "x??" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		utf8_clean(buf);
		assert_string_equal(buf, cases[i].want);
	}
}

/* The same cut process name from any path gives one service name. */
static void test_service_name_utf8(void **state)
{
	char out[256];

	cg_service_name("/", "seams-utf8-tes\xc3", out, sizeof(out));
	assert_string_equal(out, "seams-utf8-tes");
	cg_service_name(NULL, "seams-utf8-tes\xc3", out, sizeof(out));
	assert_string_equal(out, "seams-utf8-tes");
	cg_service_name("/", "\xc3", out, sizeof(out));
	assert_string_equal(out, "root");
	cg_service_name("/system.slice/caf\xc3\xa9\xff.service", "x", out, sizeof(out));
	assert_string_equal(out, "caf\xc3\xa9?");
	cg_service_name("/a/b\xe2\x82", "x", out, sizeof(out));
	assert_string_equal(out, "b");
	/* snprintf cutting a long name inside a character */
	cg_service_name("/a/xx\xc3\xa9", "x", out, 4);
	assert_string_equal(out, "xx");
}

static uint64_t ino(const char *dir, const char *name)
{
	char p[4200];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_int_equal(stat(p, &st), 0);
	return st.st_ino;
}

/* --cgroup arguments resolve to the ids their paths have now; the ones
 * gone are left out.  A plain directory stands in for the cgroup2 mount. */
static void test_resolve(void **state)
{
	char tmpl[] = "/tmp/seams-cgname-XXXXXX", full[4200], p[4200];
	const char *args[5] = { "/a", "b", "/missing", full, "/a/" };
	struct cgnames c = { .mount_fd = -1 };
	uint64_t ids[5];

	assert_non_null(mkdtemp(tmpl));
	snprintf(c.mount, sizeof(c.mount), "%s", tmpl);
	snprintf(full, sizeof(full), "%s/b", tmpl);
	snprintf(p, sizeof(p), "%s/a", tmpl);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/b", tmpl);
	assert_int_equal(mkdir(p, 0755), 0);

	assert_int_equal(cgnames_resolve(&c, args, 5, ids), 4);
	assert_true(ids[0] == ino(tmpl, "a") && ids[1] == ino(tmpl, "b"));
	assert_true(ids[2] == ino(tmpl, "b") && ids[3] == ino(tmpl, "a"));

	/* a removed: only b's two arguments are left */
	snprintf(p, sizeof(p), "%s/a", tmpl);
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(cgnames_resolve(&c, args, 5, ids), 2);
	assert_true(ids[0] == ino(tmpl, "b") && ids[1] == ino(tmpl, "b"));

	snprintf(p, sizeof(p), "%s/b", tmpl);
	rmdir(p);
	rmdir(tmpl);
	cgnames_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_clean),
		cmocka_unit_test(test_service_name_utf8),
		cmocka_unit_test(test_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
