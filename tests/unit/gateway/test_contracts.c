/* tests/unit/gateway/test_contracts.c: the home gateway's check that a provider's agreement
 * only narrows the proposal (check_narrowed(), static in contracts.c, hence the include). A
 * provider that widens anything must be caught before the home countersigns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../gateway/contracts.c"

/* mutable copies: the body's fields are char * */
static char S0[] = "count";
static char S1[] = "mean";
static char S2[] = "model_training";
static char S3[] = "hongkong/stroke-registry";
static char S4[] = "hongkong/liver-cancer";
static char S5[] = "spiffe://guangzhou.gba/firm/acme";
static char S6[] = "guangzhou";
static char S7[] = "hongkong";
static char S8[] = "scientific_research";
static char S9[] = "ethics_approval";
static char S10[] = "科研";
static char S11[] = "commercial_insurance_actuarial";
static char S12[] = "spiffe://guangzhou.gba/firm/other";
static char S13[] = "consent";
static char S14[] = "公共卫生";

static char *ops_a[] = {S0, S1};
static char *ops_b[] = {S0, S1, S2};
static char *ds_a[] = {S3};
static char *ds_b[] = {S3, S4};

static trust_contract_body base(void)
{
    trust_contract_body b;
    memset(&b, 0, sizeof(b));
    b.requester = S5;
    b.home_city = S6;
    b.provider_city = S7;
    b.datasets = ds_a;
    b.ndatasets = 1;
    b.purpose = S8;
    b.operations = ops_a;
    b.noperations = 2;
    b.legal_basis = S9;
    b.valid_from = 1000000;
    b.valid_until = 1000000 + 180 * 86400;
    b.min_cell_size = 10;
    b.max_queries = 50;
    b.has_epsilon = true;
    b.epsilon = 1.0;
    b.home_terms.purpose = S10;
    return b;
}

static void test_check_narrowed_accepts_equal_and_narrower(void **state)
{
    (void)state;
    trust_contract_body asked = base(), got = base();
    assert_null(check_narrowed(&got, &asked));
    got.noperations = 1;            /* fewer operations */
    got.min_cell_size = 20;         /* larger k */
    got.max_queries = 10;           /* smaller budget */
    got.epsilon = 0.5;              /* smaller privacy budget */
    got.valid_from += 5;            /* the provider agreed a little later */
    got.valid_until -= 86400;       /* and ends sooner */
    got.legal_basis = NULL;         /* no legal basis is narrower, not wider */
    assert_null(check_narrowed(&got, &asked));
}

static void test_check_narrowed_refuses_every_widening(void **state)
{
    (void)state;
    trust_contract_body asked = base(), got;
    got = base();
    got.operations = ops_b;
    got.noperations = 3;
    assert_string_equal(check_narrowed(&got, &asked), "an operation was added");
    got = base();
    got.datasets = ds_b;
    got.ndatasets = 2;
    assert_string_equal(check_narrowed(&got, &asked), "a dataset was added");
    got = base();
    got.valid_from += 1000; /* same length, starting later: ends after the asked end */
    got.valid_until += 1000;
    assert_string_equal(check_narrowed(&got, &asked), "validity widened");
    got = base();
    got.valid_from -= 3600; /* starting well before the proposal */
    assert_string_equal(check_narrowed(&got, &asked), "validity widened");
    got = base();
    got.min_cell_size = 5;
    assert_string_equal(check_narrowed(&got, &asked), "minimum cell size lowered");
    got = base();
    got.max_queries = 51;
    assert_string_equal(check_narrowed(&got, &asked), "query budget raised");
    got = base();
    got.max_queries = 0; /* unlimited is wider than 50 */
    assert_string_equal(check_narrowed(&got, &asked), "query budget raised");
    got = base();
    got.epsilon = 2.0;
    assert_string_equal(check_narrowed(&got, &asked), "privacy budget raised");
    got = base();
    got.has_epsilon = false;
    assert_string_equal(check_narrowed(&got, &asked), "privacy budget raised");
    got = base();
    got.purpose = S11;
    assert_string_equal(check_narrowed(&got, &asked), "purpose changed");
    got = base();
    got.requester = S12;
    assert_string_equal(check_narrowed(&got, &asked), "parties changed");
    got = base();
    got.legal_basis = S13;
    assert_string_equal(check_narrowed(&got, &asked), "legal basis changed");
    got = base();
    got.noperations = 0;
    assert_string_equal(check_narrowed(&got, &asked), "nothing left to agree");
    got = base();
    got.home_terms.purpose = S14;
    assert_string_equal(check_narrowed(&got, &asked), "home terms changed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_narrowed_accepts_equal_and_narrower),
        cmocka_unit_test(test_check_narrowed_refuses_every_widening),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
