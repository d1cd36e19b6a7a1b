/* tests/unit/conf/test_profile.c: the city profile loader. The four shipped profiles load with
 * the values the federation relies on, and every validation rule fails with "file:line: ..."
 * at the line a reader would look at; allocation failure anywhere leaves nothing behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/profile.h"

/* Allocation failure injection as in test_conf.c (--wrap in CMakeLists.txt). */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long alloc_fail_at = -1;
static long alloc_count;

static bool alloc_should_fail(void)
{
    return alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at;
}

void *__wrap_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, size);
}

static conf_profile sentinel_obj;
#define SENTINEL (&sentinel_obj)

/* Lines 1-3 of a valid profile; the sections follow on lines 4-13. */
#define HEAD "city: testcity\nlanguage: en-GB\nlaw: Test Act\n"
#define PURPOSES "purposes:\n  - term: research\n    canonical: [scientific_research]\n"
#define OPERATIONS "operations:\n  - term: stats\n    canonical: [count, sum]\n"
#define BASES "legal_bases:\n  - term: consent\n    canonical: [consent]\n"
#define RULES "rules: {min_cell_size: 5, max_duration_days: 30, model_training: false}\n"
#define VALID HEAD PURPOSES OPERATIONS BASES RULES

static int load(const char *yaml, conf_profile **out, bg_errbuf *eb)
{
    return conf_profile_load_buffer(out, "t.yaml", (const uint8_t *)yaml, strlen(yaml), eb);
}

static void expect_fail(const char *yaml, int line, const char *phrase)
{
    conf_profile *p = SENTINEL;
    bg_errbuf eb = {{0}};
    char prefix[32];
    int rv = load(yaml, &p, &eb);
    if (rv != BG_ERR_CONF_INVALID || p != SENTINEL || strstr(eb.msg, phrase) == NULL) {
        print_error("yaml:\n%s\nmsg: %s\n", yaml, eb.msg);
    }
    assert_int_equal(rv, BG_ERR_CONF_INVALID);
    assert_ptr_equal(p, SENTINEL);
    snprintf(prefix, sizeof(prefix), "t.yaml:%d: ", line);
    if (strncmp(eb.msg, prefix, strlen(prefix)) != 0) {
        print_error("expected prefix '%s', got '%s'\n", prefix, eb.msg);
    }
    assert_true(strncmp(eb.msg, prefix, strlen(prefix)) == 0);
    assert_non_null(strstr(eb.msg, phrase));
}

static void test_conf_profile_load_buffer_minimal(void **state)
{
    (void)state;
    conf_profile *p = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(load(VALID, &p, &eb), 0);
    assert_string_equal(p->path, "t.yaml");
    assert_string_equal(p->city, "testcity");
    assert_string_equal(p->language, "en-GB");
    assert_string_equal(p->law, "Test Act");
    assert_int_equal(p->npurposes, 1);
    assert_int_equal(p->noperations, 1);
    assert_int_equal(p->operations[0].ncanonical, 2);
    assert_string_equal(p->operations[0].canonical[1], "sum");
    assert_null(p->operations[0].description);
    assert_int_equal(p->nforbidden, 0);
    assert_int_equal(p->min_cell_size, 5);
    assert_int_equal(p->max_duration_days, 30);
    assert_false(p->model_training);
    assert_int_equal(p->max_queries, 0);
    assert_true(p->max_epsilon == 0.0);
    assert_ptr_equal(conf_profile_find_term(p->operations, p->noperations, "stats"),
                     &p->operations[0]);
    assert_null(conf_profile_find_term(p->operations, p->noperations, "Stats"));
    assert_null(conf_profile_find_term(p->operations, p->noperations, NULL));
    conf_profile_free(p);
    conf_profile_free(NULL);
}

static void test_conf_profile_load_buffer_scalar_canonical_and_caps(void **state)
{
    (void)state;
    conf_profile *p = NULL;
    bg_errbuf eb = {{0}};
    const char *y = HEAD PURPOSES "operations:\n  - term: n\n    canonical: count\n" BASES
        "forbidden_purposes: [commercial_insurance_actuarial]\n"
        "rules: {min_cell_size: 10, max_duration_days: 90, model_training: true, "
        "max_queries: 50, max_epsilon: 0.5}\n";
    assert_int_equal(load(y, &p, &eb), 0);
    assert_int_equal(p->operations[0].ncanonical, 1);
    assert_string_equal(p->forbidden_purposes[0], "commercial_insurance_actuarial");
    assert_int_equal(p->max_queries, 50);
    assert_true(p->max_epsilon == 0.5);
    assert_true(p->model_training);
    conf_profile_free(p);
}

static void test_conf_canon_names_known(void **state)
{
    (void)state;
    assert_true(conf_canon_is_known(CONF_CANON_OPERATION, "count"));
    assert_true(conf_canon_is_known(CONF_CANON_OPERATION, "model_training"));
    assert_false(conf_canon_is_known(CONF_CANON_OPERATION, "scientific_research"));
    assert_true(conf_canon_is_known(CONF_CANON_PURPOSE, "commercial_insurance_actuarial"));
    assert_true(conf_canon_is_known(CONF_CANON_LEGAL_BASIS, "anonymised_data"));
    assert_false(conf_canon_is_known(CONF_CANON_LEGAL_BASIS, NULL));
    const char *const *ops = conf_canon_names(CONF_CANON_OPERATION);
    size_t n = 0;
    while (ops[n] != NULL) {
        n++;
    }
    assert_int_equal(n, 7);
}

static void test_conf_profile_load_buffer_unknown_and_missing_keys(void **state)
{
    (void)state;
    expect_fail(VALID "colour: red\n", 14, "unknown key 'colour' at the top level");
    expect_fail(HEAD PURPOSES OPERATIONS BASES, 1, "missing required key 'rules'");
    expect_fail("language: en\nlaw: x\n" PURPOSES OPERATIONS BASES RULES, 1,
                "missing required key 'city'");
    expect_fail(HEAD "purposes:\n  - term: research\n    canonical: [scientific_research]\n"
                     "    colour: red\n" OPERATIONS BASES RULES,
                7, "unknown key 'colour' in purposes[0]");
    expect_fail(HEAD "purposes:\n  - term: research\n" OPERATIONS BASES RULES, 5,
                "purposes[0]: missing required key 'canonical'");
    expect_fail(HEAD PURPOSES OPERATIONS BASES "rules: {min_cell_size: 5, model_training: true}\n",
                13, "rules: missing required key 'max_duration_days'");
    expect_fail(HEAD PURPOSES OPERATIONS BASES
                "rules: {min_cell_size: 5, max_duration_days: 3, model_training: true, k: 1}\n",
                13, "unknown key 'k' in rules");
    expect_fail(VALID "city: again\n", 14, "duplicate key 'city'");
}

static void test_conf_profile_load_buffer_canonical_names(void **state)
{
    (void)state;
    expect_fail(HEAD "purposes:\n  - term: r\n    canonical: [science]\n" OPERATIONS BASES RULES,
                6, "'science' is not a canonical purpose");
    expect_fail(HEAD PURPOSES "operations:\n  - term: s\n    canonical: [count, median]\n" BASES
                    RULES,
                9, "'median' is not a canonical operation");
    /* a purpose name used as an operation is unknown for that kind */
    expect_fail(HEAD PURPOSES "operations:\n  - term: s\n    canonical: [public_health]\n" BASES
                    RULES,
                9, "is not a canonical operation");
    expect_fail(HEAD PURPOSES "operations:\n  - term: s\n    canonical: [count, count]\n" BASES
                    RULES,
                9, "'count' is listed twice");
    expect_fail(HEAD PURPOSES "operations:\n  - term: s\n    canonical: []\n" BASES RULES, 9,
                "at least 1 entry required");
    expect_fail(HEAD PURPOSES OPERATIONS BASES "forbidden_purposes: [gambling]\n" RULES, 13,
                "'gambling' is not a canonical purpose");
}

static void test_conf_profile_load_buffer_duplicate_terms(void **state)
{
    (void)state;
    expect_fail(HEAD PURPOSES
                "operations:\n  - term: stats\n    canonical: [count]\n"
                "  - term: stats\n    canonical: [sum]\n" BASES RULES,
                10, "duplicate term 'stats' (operations[0])");
}

static void test_conf_profile_load_buffer_legal_bases(void **state)
{
    (void)state;
    expect_fail(HEAD PURPOSES OPERATIONS
                "legal_bases:\n  - term: c\n    canonical: [consent, ethics_approval]\n" RULES,
                12, "exactly one canonical legal basis");
    expect_fail(HEAD PURPOSES
                "operations:\n  - term: s\n    canonical: [count]\n"
                "    requires_legal_basis: [consent]\n" BASES RULES,
                10, "only purposes can require a legal basis");
    expect_fail(HEAD
                "purposes:\n  - term: r\n    canonical: [scientific_research]\n"
                "    requires_legal_basis: [blessing]\n" OPERATIONS BASES RULES,
                7, "'blessing' is not a canonical legal basis");
    /* a requirement nobody in the city can state */
    expect_fail(HEAD
                "purposes:\n  - term: r\n    canonical: [scientific_research]\n"
                "    requires_legal_basis: [ethics_approval]\n" OPERATIONS BASES RULES,
                5, "'ethics_approval' has no term in legal_bases");
}

static void test_conf_profile_load_buffer_forbidden_and_offered(void **state)
{
    (void)state;
    expect_fail(HEAD PURPOSES OPERATIONS BASES "forbidden_purposes: [scientific_research]\n" RULES,
                5, "both offer and forbid");
}

static void test_conf_profile_load_buffer_rules_ranges(void **state)
{
    (void)state;
#define R(x) HEAD PURPOSES OPERATIONS BASES "rules:\n" x
    expect_fail(R("  min_cell_size: 0\n  max_duration_days: 30\n  model_training: false\n"), 14,
                "rules.min_cell_size: 0 is out of range");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 0\n  model_training: false\n"), 15,
                "rules.max_duration_days: 0 is out of range");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 99999\n  model_training: false\n"),
                15, "out of range (allowed: 1..3660)");
    expect_fail(R("  min_cell_size: -5\n  max_duration_days: 30\n  model_training: false\n"), 14,
                "must not be negative");
    expect_fail(R("  min_cell_size: '5'\n  max_duration_days: 30\n  model_training: false\n"),
                14, "expected an integer, got the string");
    expect_fail(R("  min_cell_size: 05\n  max_duration_days: 30\n  model_training: false\n"), 14,
                "without leading zeros");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 30\n  model_training: yes\n"), 16,
                "expected true or false");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 30\n  model_training: false\n"
                  "  max_epsilon: -1\n"),
                17, "expected a non-negative decimal number");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 30\n  model_training: false\n"
                  "  max_epsilon: .nan\n"),
                17, "expected a non-negative decimal number");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 30\n  model_training: false\n"
                  "  max_epsilon: 1e9\n"),
                17, "out of range");
    expect_fail(R("  min_cell_size: 5\n  max_duration_days: 30\n  model_training: false\n"
                  "  max_queries: 99999999999\n"),
                17, "rules.max_queries");
#undef R
}

static void test_conf_profile_load_buffer_text_fields(void **state)
{
    (void)state;
    expect_fail("city: Guangzhou\nlanguage: en\nlaw: x\n" PURPOSES OPERATIONS BASES RULES, 1,
                "not a valid city id");
    expect_fail("city: gz\nlanguage: english please\nlaw: x\n" PURPOSES OPERATIONS BASES RULES,
                2, "not a BCP 47 tag");
    expect_fail("city: gz\nlanguage: en\nlaw: ''\n" PURPOSES OPERATIONS BASES RULES, 3,
                "law: must not be empty");
    expect_fail("city: gz\nlanguage: en\nlaw: [a]\n" PURPOSES OPERATIONS BASES RULES, 3,
                "law: expected a string, got a list");
    expect_fail(HEAD "purposes:\n  - term: \"a\\tb\"\n    canonical: [public_health]\n" OPERATIONS
                    BASES RULES,
                5, "without control characters");
    expect_fail(HEAD "purposes:\n  - term: \" x\"\n    canonical: [public_health]\n" OPERATIONS
                    BASES RULES,
                5, "must not start or end with a space");
    expect_fail(HEAD "purposes: {a: 1}\n" OPERATIONS BASES RULES, 4,
                "purposes: expected a list, got a mapping");
    expect_fail(HEAD "purposes: []\n" OPERATIONS BASES RULES, 4, "at least 1 entry required");
}

static void test_conf_profile_load_buffer_yaml_structure(void **state)
{
    (void)state;
    expect_fail("", 1, "empty document");
    expect_fail("- a\n- b\n", 1, "the top level must be a mapping");
    expect_fail("city: [unclosed\n", 2, "YAML syntax error");
    expect_fail(HEAD "purposes: &p\n  - term: r\n    canonical: [public_health]\n", 4,
                "anchors");
    expect_fail(HEAD "x: *p\n", 4, "aliases");
    expect_fail("city: !!str gz\n", 1, "tags");
    expect_fail(VALID "---\ncity: b\n", 14, "only one YAML document");
    expect_fail("a: [[[[[[[[[[1]]]]]]]]]]\n", 1, "nesting too deep");
    /* invalid UTF-8 is a reader error at the right line */
    expect_fail("city: gz\nlaw: \xff\n", 2, "YAML syntax error");
}

static void test_conf_profile_load_buffer_null_args(void **state)
{
    (void)state;
    conf_profile *p = SENTINEL;
    bg_errbuf eb = {{0}};
    assert_int_equal(conf_profile_load_buffer(&p, NULL, NULL, 3, &eb), BG_ERR_CONF_INVALID);
    assert_int_equal(conf_profile_load_buffer(&p, NULL, NULL, 0, &eb), BG_ERR_CONF_INVALID);
    assert_non_null(strstr(eb.msg, "<profile>:1: empty document"));
    assert_ptr_equal(p, SENTINEL);
}

static const char *const shipped[] = {"guangzhou", "shenzhen", "hongkong", "macau"};

static void test_conf_profiles_load_dir_shipped(void **state)
{
    (void)state;
    conf_profile *ps[4];
    bg_errbuf eb = {{0}};
    int rv = conf_profiles_load_dir(ps, BG_PROFILES_DIR, shipped, 4, &eb);
    if (rv != 0) {
        print_error("%s\n", eb.msg);
    }
    assert_int_equal(rv, 0);
    /* guangzhou: 科研 and 统计分析 exist and mean what the contract issue relies on */
    const conf_profile *gz = ps[0];
    assert_string_equal(gz->language, "zh-Hans-CN");
    assert_string_equal(gz->law, "PIPL");
    const conf_term *t = conf_profile_find_term(gz->purposes, gz->npurposes, "科研");
    assert_non_null(t);
    assert_string_equal(t->canonical[0], "scientific_research");
    t = conf_profile_find_term(gz->operations, gz->noperations, "统计分析");
    assert_non_null(t);
    assert_int_equal(t->ncanonical, 5);
    assert_int_equal(gz->min_cell_size, 5);
    assert_int_equal(gz->max_duration_days, 365);
    assert_true(gz->model_training);
    assert_string_equal(gz->forbidden_purposes[0], "commercial_insurance_actuarial");
    /* shenzhen splits statistics in two */
    assert_non_null(conf_profile_find_term(ps[1]->operations, ps[1]->noperations, "描述性统计"));
    assert_non_null(conf_profile_find_term(ps[1]->operations, ps[1]->noperations, "分布分析"));
    /* hongkong: English, PDPO, k=10, 180 days, no model training, actuarial with consent */
    const conf_profile *hk = ps[2];
    assert_string_equal(hk->law, "PDPO");
    assert_int_equal(hk->min_cell_size, 10);
    assert_int_equal(hk->max_duration_days, 180);
    assert_false(hk->model_training);
    t = conf_profile_find_term(hk->purposes, hk->npurposes, "insurance actuarial research");
    assert_non_null(t);
    assert_int_equal(t->nrequires, 1);
    assert_string_equal(t->requires_legal_basis[0], "consent");
    assert_non_null(conf_profile_find_term(hk->operations, hk->noperations, "counts"));
    assert_non_null(conf_profile_find_term(hk->operations, hk->noperations, "summary statistics"));
    assert_non_null(conf_profile_find_term(hk->operations, hk->noperations, "distribution"));
    /* macau: Portuguese, Law 8/2005, k=10, 90 days, consent for every purpose */
    const conf_profile *mo = ps[3];
    assert_string_equal(mo->language, "pt-MO");
    assert_non_null(strstr(mo->law, "8/2005"));
    assert_int_equal(mo->min_cell_size, 10);
    assert_int_equal(mo->max_duration_days, 90);
    assert_false(mo->model_training);
    for (size_t i = 0; i < mo->npurposes; i++) {
        assert_int_equal(mo->purposes[i].nrequires, 1);
        assert_string_equal(mo->purposes[i].requires_legal_basis[0], "consent");
        assert_string_not_equal(mo->purposes[i].canonical[0], "commercial_insurance_actuarial");
    }
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(ps[i]->city, shipped[i]);
        conf_profile_free(ps[i]);
    }
}

static void test_conf_profiles_load_dir_errors(void **state)
{
    (void)state;
    conf_profile *ps[2];
    bg_errbuf eb = {{0}};
    const char *bad_id[] = {"guangzhou", "../etc"};
    assert_int_equal(conf_profiles_load_dir(ps, BG_PROFILES_DIR, bad_id, 2, &eb),
                     BG_ERR_CONF_INVALID);
    assert_null(ps[0]);
    assert_non_null(strstr(eb.msg, "not a valid city id"));
    const char *missing[] = {"guangzhou", "atlantis"};
    assert_int_equal(conf_profiles_load_dir(ps, BG_PROFILES_DIR, missing, 2, &eb),
                     BG_ERR_CONF_IO);
    assert_null(ps[0]);
    assert_null(ps[1]);
    assert_non_null(strstr(eb.msg, "atlantis.yaml: cannot read"));

    /* a file whose city: is not its name */
    char dir[] = "/tmp/bg-profile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/other.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(VALID, f);
    fclose(f);
    const char *other[] = {"other"};
    assert_int_equal(conf_profiles_load_dir(ps, dir, other, 1, &eb), BG_ERR_CONF_INVALID);
    assert_null(ps[0]);
    assert_non_null(strstr(eb.msg, "does not match the file name"));
    remove(path);
    rmdir(dir);
}

static void test_conf_profile_load_nomem_every_allocation(void **state)
{
    (void)state;
    const char *path = BG_PROFILES_DIR "/hongkong.yaml";
    bool succeeded = false;
    for (long n = 0; n < 100000 && !succeeded; n++) {
        conf_profile *p = SENTINEL;
        bg_errbuf eb = {{0}};
        alloc_count = 0;
        alloc_fail_at = n;
        int rv = conf_profile_load(&p, path, &eb);
        alloc_fail_at = -1;
        if (rv == 0) {
            succeeded = true;
            conf_profile_free(p);
        } else {
            assert_int_equal(rv, BG_ERR_NOMEM);
            assert_ptr_equal(p, SENTINEL);
        }
    }
    assert_true(succeeded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_profile_load_buffer_minimal),
        cmocka_unit_test(test_conf_profile_load_buffer_scalar_canonical_and_caps),
        cmocka_unit_test(test_conf_canon_names_known),
        cmocka_unit_test(test_conf_profile_load_buffer_unknown_and_missing_keys),
        cmocka_unit_test(test_conf_profile_load_buffer_canonical_names),
        cmocka_unit_test(test_conf_profile_load_buffer_duplicate_terms),
        cmocka_unit_test(test_conf_profile_load_buffer_legal_bases),
        cmocka_unit_test(test_conf_profile_load_buffer_forbidden_and_offered),
        cmocka_unit_test(test_conf_profile_load_buffer_rules_ranges),
        cmocka_unit_test(test_conf_profile_load_buffer_text_fields),
        cmocka_unit_test(test_conf_profile_load_buffer_yaml_structure),
        cmocka_unit_test(test_conf_profile_load_buffer_null_args),
        cmocka_unit_test(test_conf_profiles_load_dir_shipped),
        cmocka_unit_test(test_conf_profiles_load_dir_errors),
        cmocka_unit_test(test_conf_profile_load_nomem_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
