/* tests/unit/routing/test_table.c: next-hop resolution, dataset references and the hop-list
 * rules (loops, bound, malformed headers, append). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "conf/conf.h"
#include "routing/table.h"

static const char config[] = "city: guangzhou\n"
                             "listeners: [{address: 127.0.0.1:8443}]\n"
                             "tls: {cert: c, key: k, trust_bundle: t}\n"
                             "upstream: {url: builtin}\n"
                             "peers:\n"
                             "  - {name: shenzhen, urls: [https://127.0.0.1:8444]}\n"
                             "  - {name: macau, urls: [https://127.0.0.1:8446]}\n"
                             "  - {name: zhuhai, urls: [https://127.0.0.1:8447]}\n"
                             "routes:\n"
                             "  - {city: hongkong, via: shenzhen}\n"
                             "  - {city: taipa, via: macau}\n"
                             "  - {city: a, via: zhuhai}\n";

typedef struct fixture {
    conf_gateway *cfg;
    route_table *t;
} fixture;

static int setup(void **state)
{
    static fixture f;
    bg_errbuf eb = {{0}};
    if (conf_gateway_load_buffer(&f.cfg, "t.yaml", (const uint8_t *)config, strlen(config),
                                 &eb) != 0) {
        print_error("%s\n", eb.msg);
        return -1;
    }
    if (route_table_new(&f.t, f.cfg, &eb) != 0) {
        print_error("%s\n", eb.msg);
        conf_gateway_free(f.cfg);
        return -1;
    }
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    route_table_free(f->t);
    conf_gateway_free(f->cfg);
    return 0;
}

/* ---- route_table_next_hop ---- */

static void test_route_table_next_hop_own_city(void **state)
{
    fixture *f = *state;
    const conf_peer *p = (const conf_peer *)f; /* must be overwritten with NULL */
    assert_int_equal(route_table_next_hop(f->t, "guangzhou", &p), 0);
    assert_null(p);
}

static void test_route_table_next_hop_peer_direct(void **state)
{
    fixture *f = *state;
    const conf_peer *p = NULL;
    assert_int_equal(route_table_next_hop(f->t, "shenzhen", &p), 0);
    assert_ptr_equal(p, conf_gateway_find_peer(f->cfg, "shenzhen"));
    assert_int_equal(route_table_next_hop(f->t, "macau", &p), 0);
    assert_string_equal(p->name, "macau");
    assert_int_equal(route_table_next_hop(f->t, "zhuhai", &p), 0);
    assert_string_equal(p->name, "zhuhai");
}

static void test_route_table_next_hop_via_peer(void **state)
{
    fixture *f = *state;
    const conf_peer *p = NULL;
    assert_int_equal(route_table_next_hop(f->t, "hongkong", &p), 0);
    assert_ptr_equal(p, conf_gateway_find_peer(f->cfg, "shenzhen"));
    assert_int_equal(route_table_next_hop(f->t, "taipa", &p), 0);
    assert_string_equal(p->name, "macau");
    assert_int_equal(route_table_next_hop(f->t, "a", &p), 0);
    assert_string_equal(p->name, "zhuhai");
}

static void test_route_table_next_hop_unknown(void **state)
{
    fixture *f = *state;
    const conf_peer *p = (const conf_peer *)f;
    assert_int_equal(route_table_next_hop(f->t, "beijing", &p), BG_ERR_NO_ROUTE);
    assert_int_equal(route_table_next_hop(f->t, "", &p), BG_ERR_NO_ROUTE);
    assert_int_equal(route_table_next_hop(f->t, "shenzhen2", &p), BG_ERR_NO_ROUTE);
    assert_int_equal(route_table_next_hop(f->t, "shenzhe", &p), BG_ERR_NO_ROUTE);
    assert_int_equal(route_table_next_hop(f->t, "Shenzhen", &p), BG_ERR_NO_ROUTE);
    assert_int_equal(route_table_next_hop(f->t, NULL, &p), BG_ERR_NO_ROUTE);
    assert_ptr_equal(p, (const conf_peer *)f); /* untouched on failure */
}

static void test_route_table_next_hop_no_peers(void **state)
{
    (void)state;
    conf_gateway cfg = {.city = (char *)"guangzhou"};
    route_table *t = NULL;
    const conf_peer *p = NULL;
    assert_int_equal(route_table_new(&t, &cfg, NULL), 0);
    assert_int_equal(route_table_next_hop(t, "guangzhou", &p), 0);
    assert_null(p);
    assert_int_equal(route_table_next_hop(t, "macau", &p), BG_ERR_NO_ROUTE);
    route_table_free(t);
    route_table_free(NULL);
}

/* Alternatives: the direct peer first, then routes in the order written. */
static void test_route_table_next_hops_alternatives(void **state)
{
    (void)state;
    conf_peer peers[3] = {{.name = (char *)"shenzhen"}, {.name = (char *)"zhuhai"},
                          {.name = (char *)"macau"}};
    conf_route routes[3] = {{.city = (char *)"hongkong", .via = (char *)"shenzhen"},
                            {.city = (char *)"taipa", .via = (char *)"macau"},
                            {.city = (char *)"hongkong", .via = (char *)"zhuhai"}};
    conf_gateway cfg = {.city = (char *)"guangzhou", .peers = peers, .npeers = 3,
                        .routes = routes, .nroutes = 3};
    route_table *t = NULL;
    assert_int_equal(route_table_new(&t, &cfg, NULL), 0);
    const conf_peer *hops[4];
    assert_int_equal(route_table_next_hops(t, "hongkong", hops, 4), 2);
    assert_ptr_equal(hops[0], &peers[0]);
    assert_ptr_equal(hops[1], &peers[1]);
    assert_int_equal(route_table_next_hops(t, "hongkong", hops, 1), 1);
    assert_ptr_equal(hops[0], &peers[0]);
    assert_int_equal(route_table_next_hops(t, "taipa", hops, 4), 1);
    assert_ptr_equal(hops[0], &peers[2]);
    assert_int_equal(route_table_next_hops(t, "guangzhou", hops, 4), 0);
    assert_int_equal(route_table_next_hops(t, "nowhere", hops, 4), 0);
    const conf_peer *p = NULL;
    assert_int_equal(route_table_next_hop(t, "hongkong", &p), 0);
    assert_ptr_equal(p, &peers[0]);
    route_table_free(t);
}

/* ---- route_table_new on configs conf/ would reject ---- */

static void test_route_table_new_invalid(void **state)
{
    (void)state;
    conf_peer peers[2] = {{.name = (char *)"macau"}, {.name = (char *)"macau"}};
    conf_route routes[1] = {{.city = (char *)"hongkong", .via = (char *)"nowhere"}};
    route_table *t = (route_table *)state; /* sentinel */
    bg_errbuf eb = {{0}};

    conf_gateway dup = {.city = (char *)"guangzhou", .peers = peers, .npeers = 2};
    assert_int_equal(route_table_new(&t, &dup, &eb), BG_ERR_CONF_INVALID);
    assert_non_null(strstr(eb.msg, "macau"));

    conf_gateway badvia = {.city = (char *)"guangzhou", .peers = peers, .npeers = 1,
                           .routes = routes, .nroutes = 1};
    assert_int_equal(route_table_new(&t, &badvia, &eb), BG_ERR_CONF_INVALID);
    assert_non_null(strstr(eb.msg, "unknown peer"));

    /* Routes without any peer (the path clang-tidy once read as a NULL entries array). */
    conf_gateway nopeers = {.city = (char *)"guangzhou", .routes = routes, .nroutes = 1};
    assert_int_equal(route_table_new(&t, &nopeers, &eb), BG_ERR_CONF_INVALID);
    assert_non_null(strstr(eb.msg, "unknown peer"));

    conf_route self_route = {.city = (char *)"guangzhou", .via = (char *)"macau"};
    conf_gateway selfr = {.city = (char *)"guangzhou", .peers = peers, .npeers = 1,
                          .routes = &self_route, .nroutes = 1};
    assert_int_equal(route_table_new(&t, &selfr, &eb), BG_ERR_CONF_INVALID);

    conf_route peer_route = {.city = (char *)"macau", .via = (char *)"macau"};
    conf_gateway peerr = {.city = (char *)"guangzhou", .peers = peers, .npeers = 1,
                          .routes = &peer_route, .nroutes = 1};
    assert_int_equal(route_table_new(&t, &peerr, &eb), BG_ERR_CONF_INVALID);

    conf_gateway nocity = {.city = NULL};
    assert_int_equal(route_table_new(&t, &nocity, &eb), BG_ERR_CONF_INVALID);
    assert_ptr_equal(t, (route_table *)state);
}

/* ---- route_dataset_city ---- */

static void test_route_dataset_city_valid(void **state)
{
    (void)state;
    char city[64];
    assert_int_equal(route_dataset_city("shenzhen/traffic.2024_q1-v2", city, sizeof(city)), 0);
    assert_string_equal(city, "shenzhen");
    assert_int_equal(route_dataset_city("a/B", city, sizeof(city)), 0);
    assert_string_equal(city, "a");
    assert_int_equal(route_dataset_city("hong-kong9/x", city, sizeof(city)), 0);
    assert_string_equal(city, "hong-kong9");

    char longest[64 + 1 + 128 + 1];
    memset(longest, 'c', 63);
    longest[63] = '/';
    memset(longest + 64, 'N', 128);
    longest[192] = 0;
    assert_int_equal(route_dataset_city(longest, city, sizeof(city)), 0);
    assert_int_equal(strlen(city), 63);
}

static void test_route_dataset_city_invalid(void **state)
{
    (void)state;
    char city[64];
    strcpy(city, "untouched");
    static const char *const bad[] = {
        "",            /* empty */
        "shenzhen",    /* missing slash */
        "/traffic",    /* empty city */
        "shenzhen/",   /* empty name, trailing slash */
        "shenzhen/a/", /* trailing slash */
        "shenzhen/a/b", /* second slash */
        "Shenzhen/x",  /* uppercase city */
        "1city/x",     /* city must start with a letter */
        "-city/x",
        "shen_zhen/x", /* bad city char */
        "shen zhen/x",
        "shenzhen/a b", /* bad name char */
        "shenzhen/a:b",
        "shenzhen/\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (route_dataset_city(bad[i], city, sizeof(city)) != BG_ERR_INVAL) {
            print_error("'%s' accepted\n", bad[i]);
            fail();
        }
    }
    assert_string_equal(city, "untouched");

    char toolong_city[64 + 3];
    memset(toolong_city, 'c', 64);
    memcpy(toolong_city + 64, "/x", 3);
    assert_int_equal(route_dataset_city(toolong_city, city, sizeof(city)), BG_ERR_INVAL);

    char toolong_name[3 + 129 + 1];
    memcpy(toolong_name, "ab/", 3);
    memset(toolong_name + 3, 'n', 129);
    toolong_name[132] = 0;
    assert_int_equal(route_dataset_city(toolong_name, city, sizeof(city)), BG_ERR_INVAL);

    /* The output buffer must hold the city and its NUL. */
    char small[8];
    assert_int_equal(route_dataset_city("shenzhen/x", small, sizeof(small)), BG_ERR_INVAL);
    assert_int_equal(route_dataset_city("shenzhe/x", small, sizeof(small)), 0);
    assert_string_equal(small, "shenzhe");
    assert_int_equal(route_dataset_city(NULL, city, sizeof(city)), BG_ERR_INVAL);
}

/* ---- route_hops_check ---- */

static void test_route_hops_check_ok(void **state)
{
    (void)state;
    assert_int_equal(route_hops_check(NULL, "guangzhou", 8), 0);
    assert_int_equal(route_hops_check("", "guangzhou", 8), 0);
    assert_int_equal(route_hops_check("shenzhen", "guangzhou", 8), 0);
    assert_int_equal(route_hops_check("shenzhen,macau", "guangzhou", 8), 0);
    /* A prefix or extension of our name is not us. */
    assert_int_equal(route_hops_check("guangzhou2,guang", "guangzhou", 8), 0);
    assert_int_equal(route_hops_check("a,b,c,d,e,f,g", "guangzhou", 8), 0);
}

static void test_route_hops_check_loop(void **state)
{
    (void)state;
    assert_int_equal(route_hops_check("guangzhou", "guangzhou", 8), BG_ERR_LOOP);
    assert_int_equal(route_hops_check("shenzhen,guangzhou", "guangzhou", 8), BG_ERR_LOOP);
    assert_int_equal(route_hops_check("guangzhou,shenzhen", "guangzhou", 8), BG_ERR_LOOP);
    assert_int_equal(route_hops_check("a,guangzhou,b", "guangzhou", 8), BG_ERR_LOOP);
    /* A loop is reported even when the list is also full. */
    assert_int_equal(route_hops_check("a,guangzhou", "guangzhou", 2), BG_ERR_LOOP);
}

static void test_route_hops_check_too_many(void **state)
{
    (void)state;
    assert_int_equal(route_hops_check("a,b,c,d,e,f,g,h", "guangzhou", 8), BG_ERR_TOO_MANY_HOPS);
    assert_int_equal(route_hops_check("a,b,c,d,e,f,g,h,i", "guangzhou", 8),
                     BG_ERR_TOO_MANY_HOPS);
    assert_int_equal(route_hops_check("a", "guangzhou", 1), BG_ERR_TOO_MANY_HOPS);
    assert_int_equal(route_hops_check("", "guangzhou", 1), 0);
    assert_int_equal(route_hops_check(NULL, "guangzhou", 0), BG_ERR_TOO_MANY_HOPS);
}

static void test_route_hops_check_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        ",",        "a,,b",      ",a",        "a,",     "a, b",   " a",
        "a ",       "A",         "a,B",       "1a",     "a_b",    "a;b",
        "a\tb",     "a,-b",      "a,\xc3\xa9", "a,,",   ",,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (route_hops_check(bad[i], "guangzhou", 8) != BG_ERR_INVAL) {
            print_error("'%s' accepted\n", bad[i]);
            fail();
        }
    }
    char toolong[65];
    memset(toolong, 'a', 64);
    toolong[64] = 0;
    assert_int_equal(route_hops_check(toolong, "guangzhou", 8), BG_ERR_INVAL);
    toolong[63] = 0;
    assert_int_equal(route_hops_check(toolong, "guangzhou", 8), 0);
    /* Malformed wins over loop: the header is the sender's bug. */
    assert_int_equal(route_hops_check("guangzhou,,x", "guangzhou", 8), BG_ERR_INVAL);
}

/* ---- route_hops_append ---- */

static void test_route_hops_append_cases(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(route_hops_append(NULL, "guangzhou", out, sizeof(out)), 0);
    assert_string_equal(out, "guangzhou");
    assert_int_equal(route_hops_append("", "guangzhou", out, sizeof(out)), 0);
    assert_string_equal(out, "guangzhou");
    assert_int_equal(route_hops_append("shenzhen", "guangzhou", out, sizeof(out)), 0);
    assert_string_equal(out, "shenzhen,guangzhou");
    assert_int_equal(route_hops_append("a,b", "c", out, sizeof(out)), 0);
    assert_string_equal(out, "a,b,c");
}

static void test_route_hops_append_overflow(void **state)
{
    (void)state;
    char out[8];
    memcpy(out, "XXXXXXX", 8);
    /* "ab,cdef" + NUL = 8 fits exactly; one more byte does not. */
    assert_int_equal(route_hops_append("ab", "cdef", out, sizeof(out)), 0);
    assert_string_equal(out, "ab,cdef");
    memcpy(out, "XXXXXXX", 8);
    assert_int_equal(route_hops_append("ab", "cdefg", out, sizeof(out)), BG_ERR_RANGE);
    assert_string_equal(out, "XXXXXXX");
    assert_int_equal(route_hops_append(NULL, "abcdefgh", out, sizeof(out)), BG_ERR_RANGE);
    assert_int_equal(route_hops_append(NULL, "abcdefg", out, sizeof(out)), 0);
    assert_int_equal(route_hops_append(NULL, "a", out, 0), BG_ERR_RANGE);
    assert_int_equal(route_hops_append(NULL, "a", out, 1), BG_ERR_RANGE);
}

static void test_route_hops_append_then_check(void **state)
{
    (void)state;
    /* What we append is what the next gateway accepts, and our own name then loops. */
    char out[256];
    assert_int_equal(route_hops_append("shenzhen", "guangzhou", out, sizeof(out)), 0);
    assert_int_equal(route_hops_check(out, "macau", 8), 0);
    assert_int_equal(route_hops_check(out, "guangzhou", 8), BG_ERR_LOOP);
    assert_int_equal(route_hops_check(out, "macau", 2), BG_ERR_TOO_MANY_HOPS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_route_table_next_hop_own_city, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_table_next_hop_peer_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_table_next_hop_via_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_table_next_hop_unknown, setup, teardown),
        cmocka_unit_test(test_route_table_next_hop_no_peers),
        cmocka_unit_test(test_route_table_new_invalid),
        cmocka_unit_test(test_route_table_next_hops_alternatives),
        cmocka_unit_test(test_route_dataset_city_valid),
        cmocka_unit_test(test_route_dataset_city_invalid),
        cmocka_unit_test(test_route_hops_check_ok),
        cmocka_unit_test(test_route_hops_check_loop),
        cmocka_unit_test(test_route_hops_check_too_many),
        cmocka_unit_test(test_route_hops_check_malformed),
        cmocka_unit_test(test_route_hops_append_cases),
        cmocka_unit_test(test_route_hops_append_overflow),
        cmocka_unit_test(test_route_hops_append_then_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
