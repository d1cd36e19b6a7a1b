/* tests/unit/trust/test_translate.c: the narrowing translator over the four shipped profiles.
 * Named cases from the contract issue, every one of the 12 ordered city pairs, and a property
 * test over random proposals: the effective contract never permits more than the request, the
 * home city's rules and the provider's rules, and a refusal lists every problem. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/profile.h"
#include "trust/translate.h"

enum { GZ, SZ, HK, MO, NCITIES };
static const char *const cities[NCITIES] = {"guangzhou", "shenzhen", "hongkong", "macau"};
static conf_profile *prof[NCITIES];

#define NOW ((int64_t)1767225600) /* 2026-01-01T00:00:00Z */
#define DAY ((int64_t)86400)

static int setup(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    int rv = conf_profiles_load_dir(prof, BG_PROFILES_DIR, cities, NCITIES, &eb);
    if (rv != 0) {
        fprintf(stderr, "%s\n", eb.msg);
    }
    return rv;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCITIES; i++) {
        conf_profile_free(prof[i]);
    }
    return 0;
}

/* A proposal builder with its own storage. */
typedef struct req {
    char requester[96];
    char datasets[4][96];
    const char *dsv[4];
    const char *ops[8];
    trust_proposal p;
} req;

static void req_init(req *r, int home, int provider, const char *purpose, const char *legal,
                     uint32_t days)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->requester, sizeof(r->requester), "spiffe://%s.gba/firm/acme-1", cities[home]);
    snprintf(r->datasets[0], sizeof(r->datasets[0]), "%s/stroke-registry", cities[provider]);
    r->dsv[0] = r->datasets[0];
    r->p.requester = r->requester;
    r->p.home_city = cities[home];
    r->p.provider_city = cities[provider];
    r->p.purpose = purpose;
    r->p.legal_basis = legal;
    r->p.operations = r->ops;
    r->p.datasets = r->dsv;
    r->p.ndatasets = 1;
    r->p.valid_days = days;
}

static void req_op(req *r, const char *op)
{
    assert_true(r->p.noperations < 8);
    r->ops[r->p.noperations++] = op;
}

/* The first term of |terms| meaning |canon|, or NULL. */
static const char *term_for(const conf_term *terms, size_t n, const char *canon)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < terms[i].ncanonical; j++) {
            if (strcmp(terms[i].canonical[j], canon) == 0) {
                return terms[i].term;
            }
        }
    }
    return NULL;
}

static bool has_refusal(const trust_refusals *r, trust_refusal_code code, const char *field,
                        const char *term, const char *profile)
{
    for (size_t i = 0; i < r->n; i++) {
        const trust_refusal *x = &r->items[i];
        if (x->code == code && (field == NULL || strcmp(x->field, field) == 0) &&
            (term == NULL || strcmp(x->term, term) == 0) &&
            (profile == NULL || strcmp(x->profile, profile) == 0)) {
            return true;
        }
    }
    return false;
}

static void dump(const trust_refusals *r)
{
    for (size_t i = 0; i < r->n; i++) {
        print_message("  refusal %s field=%s term=%s profile=%s: %s\n",
                      trust_refusal_code_name(r->items[i].code), r->items[i].field,
                      r->items[i].term, r->items[i].profile, r->items[i].reason);
    }
}

/* Runs both steps; returns 0 with |*a| filled, or the failing step's code with |refusals|. */
static int negotiate(int home, int provider, const req *r, trust_agreement *a,
                     trust_refusals *refusals)
{
    trust_canonical c;
    int rv = trust_translate_home(prof[home], &r->p, &c, refusals);
    if (rv != 0) {
        return rv;
    }
    rv = trust_translate_provider(prof[provider], prof[home], &c, NOW, a, refusals);
    trust_canonical_dispose(&c);
    return rv;
}

static bool strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- the named cases ---- */

static void test_trust_translate_guangzhou_to_hongkong_research_stats(void **state)
{
    (void)state;
    req r;
    req_init(&r, GZ, HK, "科研", "伦理审查批准", 365);
    req_op(&r, "统计分析");
    r.p.max_queries = 50;
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    assert_int_equal(trust_translate_home(prof[GZ], &r.p, &c, &rf), 0);
    assert_int_equal(rf.n, 0);
    assert_int_equal(c.npurposes, 1);
    assert_string_equal(c.purposes[0], "scientific_research");
    assert_int_equal(c.noperations, 5);
    assert_string_equal(c.operations[0], "count");
    assert_string_equal(c.operations[4], "quantiles");
    assert_string_equal(c.legal_basis, "ethics_approval");
    assert_string_equal(c.home_terms.purpose, "科研");
    assert_string_equal(c.home_terms.law, "PIPL");

    trust_agreement a;
    int rv = trust_translate_provider(prof[HK], prof[GZ], &c, NOW, &a, &rf);
    dump(&rf);
    assert_int_equal(rv, 0);
    assert_int_equal(a.min_cell_size, 10);
    assert_int_equal(a.valid_days, 180);
    assert_true(a.valid_from == NOW);
    assert_true(a.valid_until == NOW + 180 * DAY);
    assert_int_equal(a.max_queries, 50);
    assert_true(a.epsilon == 0.0); /* hongkong's cap bounds a budget; none was asked for */
    assert_int_equal(a.noperations, 5);
    assert_string_equal(a.home_terms.purpose, "科研");
    assert_string_equal(a.home_terms.operations[0], "统计分析");
    assert_string_equal(a.home_terms.legal_basis, "伦理审查批准");
    assert_string_equal(a.provider_terms.city, "hongkong");
    assert_string_equal(a.provider_terms.language, "en-HK");
    assert_string_equal(a.provider_terms.purpose, "scientific research");
    assert_string_equal(a.provider_terms.legal_basis, "ethics committee approval");
    assert_int_equal(a.provider_terms.noperations, 3);
    assert_string_equal(a.provider_terms.operations[0], "counts");
    assert_string_equal(a.provider_terms.operations[1], "summary statistics");
    assert_string_equal(a.provider_terms.operations[2], "distribution");
    assert_string_equal(a.datasets[0], "hongkong/stroke-registry");
    trust_agreement_dispose(&a);
    trust_canonical_dispose(&c);
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_hongkong_actuarial_to_mainland_forbidden(void **state)
{
    (void)state;
    const int providers[] = {GZ, SZ};
    for (size_t i = 0; i < 2; i++) {
        req r;
        req_init(&r, HK, providers[i], "insurance actuarial research", "prescribed consent", 90);
        req_op(&r, "counts");
        trust_refusals rf;
        trust_refusals_init(&rf);
        trust_agreement a;
        assert_int_equal(negotiate(HK, providers[i], &r, &a, &rf), BG_ERR_INVAL);
        assert_int_equal(rf.n, 1);
        assert_true(has_refusal(&rf, TRUST_REFUSE_FORBIDDEN_PURPOSE, "purpose",
                                "commercial_insurance_actuarial", cities[providers[i]]));
        assert_string_equal(trust_refusal_code_name(rf.items[0].code), "forbidden_purpose");
        trust_refusals_dispose(&rf);
    }
    /* macau has no such purpose at all: untranslatable, not forbidden */
    req r;
    req_init(&r, HK, MO, "insurance actuarial research", "prescribed consent", 90);
    req_op(&r, "counts");
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_agreement a;
    assert_int_equal(negotiate(HK, MO, &r, &a, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose",
                            "commercial_insurance_actuarial", "macau"));
    /* ...and macau also wants consent for everything; consent was given, so no more */
    assert_int_equal(rf.n, 1);
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_hongkong_actuarial_needs_consent(void **state)
{
    (void)state;
    req r;
    req_init(&r, HK, GZ, "insurance actuarial research", "ethics committee approval", 90);
    req_op(&r, "counts");
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    assert_int_equal(trust_translate_home(prof[HK], &r.p, &c, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis",
                            "ethics committee approval", "hongkong"));
    trust_refusals_dispose(&rf);
    r.p.legal_basis = NULL;
    assert_int_equal(trust_translate_home(prof[HK], &r.p, &c, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis",
                            "insurance actuarial research", "hongkong"));
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_model_training_to_hongkong_refused(void **state)
{
    (void)state;
    req r;
    req_init(&r, GZ, HK, "科研", "个人同意", 30);
    req_op(&r, "统计分析");
    req_op(&r, "模型训练");
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_agreement a;
    assert_int_equal(negotiate(GZ, HK, &r, &a, &rf), BG_ERR_INVAL);
    assert_int_equal(rf.n, 1);
    assert_true(has_refusal(&rf, TRUST_REFUSE_OPERATION, "operations", "model_training",
                            "hongkong"));
    trust_refusals_dispose(&rf);
    /* hongkong refuses it for its own firms already at home */
    req_init(&r, HK, GZ, "scientific research", "prescribed consent", 30);
    req_op(&r, "model training");
    assert_int_equal(negotiate(HK, GZ, &r, &a, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_OPERATION, "operations", "model training",
                            "hongkong"));
    trust_refusals_dispose(&rf);
    /* between the two cities that allow it, it is agreed */
    req_init(&r, GZ, SZ, "科研", "个人同意", 30);
    req_op(&r, "模型训练");
    assert_int_equal(negotiate(GZ, SZ, &r, &a, &rf), 0);
    assert_int_equal(a.noperations, 1);
    assert_string_equal(a.operations[0], "model_training");
    assert_string_equal(a.provider_terms.operations[0], "模型训练");
    assert_string_equal(a.provider_terms.purpose, "科学研究");
    assert_string_equal(a.provider_terms.legal_basis, "知情同意");
    trust_agreement_dispose(&a);
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_home_lists_every_problem(void **state)
{
    (void)state;
    req r;
    req_init(&r, GZ, HK, "赌博", "神谕", 400);
    req_op(&r, "统计分析");
    req_op(&r, "读心术");
    req_op(&r, "counts"); /* hongkong's word, not guangzhou's */
    r.dsv[1] = "macau/births";
    r.dsv[2] = "hongkong/Bad Name";
    r.p.ndatasets = 3;
    r.p.epsilon = NAN;
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    memset(&c, 0xa5, sizeof(c));
    trust_canonical before = c;
    assert_int_equal(trust_translate_home(prof[GZ], &r.p, &c, &rf), BG_ERR_INVAL);
    assert_memory_equal(&c, &before, sizeof(c));
    dump(&rf);
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", "赌博", "guangzhou"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "legal_basis", "神谕", "guangzhou"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations", "读心术", "guangzhou"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations", "counts", "guangzhou"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_DURATION, "valid_days", "400", "guangzhou"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "datasets", "macau/births", NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "datasets", "hongkong/Bad Name", NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "epsilon", NULL, NULL));
    assert_int_equal(rf.n, 8);
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_home_envelope(void **state)
{
    (void)state;
    req r;
    req_init(&r, GZ, HK, "公共卫生", NULL, 30);
    req_op(&r, "统计分析");
    r.p.requester = "spiffe://shenzhen.gba/firm/acme";
    r.p.home_city = "shenzhen";
    r.p.provider_city = "Hong Kong";
    r.p.valid_days = 0;
    r.p.max_queries = 7;
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    assert_int_equal(trust_translate_home(prof[GZ], &r.p, &c, &rf), BG_ERR_INVAL);
    dump(&rf);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "requester", NULL, NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "home_city", "shenzhen", NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "provider_city", "Hong Kong", NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "valid_days", "0", NULL));
    trust_refusals_dispose(&rf);
    /* no operations, no datasets */
    req_init(&r, GZ, HK, "公共卫生", NULL, 30);
    r.p.ndatasets = 0;
    assert_int_equal(trust_translate_home(prof[GZ], &r.p, &c, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "operations", NULL, NULL));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "datasets", NULL, NULL));
    trust_refusals_dispose(&rf);
    assert_int_equal(trust_translate_home(NULL, &r.p, &c, &rf), BG_ERR_INVAL);
}

static void test_trust_translate_caps(void **state)
{
    (void)state;
    /* hongkong caps queries at 1000000 and epsilon at 1.0 for its own firms */
    req r;
    req_init(&r, HK, GZ, "public health surveillance", NULL, 30);
    req_op(&r, "counts");
    r.p.max_queries = 5000000;
    r.p.epsilon = 3.0;
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    assert_int_equal(trust_translate_home(prof[HK], &r.p, &c, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "max_queries", "5000000", "hongkong"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "epsilon", "3", "hongkong"));
    trust_refusals_dispose(&rf);
    /* guangzhou has no caps; macau's 500 / 0.5 narrow the request at the provider */
    req_init(&r, GZ, MO, "公共卫生", "个人同意", 365);
    req_op(&r, "一致性评估");
    r.p.max_queries = 5000;
    r.p.epsilon = 3.0;
    trust_agreement a;
    assert_int_equal(negotiate(GZ, MO, &r, &a, &rf), 0);
    assert_int_equal(a.max_queries, 500);
    assert_true(a.epsilon == 0.5);
    assert_int_equal(a.valid_days, 90);
    assert_string_equal(a.provider_terms.purpose, "saúde pública");
    assert_string_equal(a.provider_terms.operations[0], "concordância");
    trust_agreement_dispose(&a);
    /* a smaller request wins over a cap */
    r.p.max_queries = 20;
    r.p.epsilon = 0.1;
    assert_int_equal(negotiate(GZ, MO, &r, &a, &rf), 0);
    assert_int_equal(a.max_queries, 20);
    assert_true(a.epsilon == 0.1);
    trust_agreement_dispose(&a);
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_provider_legal_basis(void **state)
{
    (void)state;
    /* guangzhou's health policy under statutory duty: macau has no such legal basis and
     * wants consent for every purpose; both problems are listed */
    req r;
    req_init(&r, GZ, MO, "卫生政策制定", "法定职责", 30);
    req_op(&r, "统计分析");
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_agreement a;
    assert_int_equal(negotiate(GZ, MO, &r, &a, &rf), BG_ERR_INVAL);
    dump(&rf);
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "legal_basis", "statutory_duty",
                            "macau"));
    assert_true(has_refusal(&rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis", "statutory_duty",
                            "macau"));
    assert_int_equal(rf.n, 2);
    trust_refusals_dispose(&rf);
    /* public health without any legal basis: fine in guangzhou, required by macau */
    req_init(&r, GZ, MO, "公共卫生", NULL, 30);
    req_op(&r, "统计分析");
    assert_int_equal(negotiate(GZ, MO, &r, &a, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis", "saúde pública",
                            "macau"));
    trust_refusals_dispose(&rf);
    /* model development is unknown in hongkong */
    req_init(&r, SZ, HK, "人工智能研发", "知情同意", 30);
    req_op(&r, "描述性统计");
    assert_int_equal(negotiate(SZ, HK, &r, &a, &rf), BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", "model_development",
                            "hongkong"));
    trust_refusals_dispose(&rf);
}

static void test_trust_translate_provider_revalidates(void **state)
{
    (void)state;
    req r;
    req_init(&r, GZ, HK, "科研", "个人同意", 30);
    req_op(&r, "统计分析");
    trust_refusals rf;
    trust_refusals_init(&rf);
    trust_canonical c;
    assert_int_equal(trust_translate_home(prof[GZ], &r.p, &c, &rf), 0);
    trust_agreement a;
    /* wrong provider profile */
    assert_int_equal(trust_translate_provider(prof[MO], prof[GZ], &c, NOW, &a, &rf),
                     BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "provider_city", "hongkong", "macau"));
    trust_refusals_dispose(&rf);
    /* a canonical form whose home wording was tampered with */
    char *saved = c.home_terms.purpose;
    c.home_terms.purpose = (char *)"公共卫生";
    assert_int_equal(trust_translate_provider(prof[HK], prof[GZ], &c, NOW, &a, &rf),
                     BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "purpose", "公共卫生", "guangzhou"));
    trust_refusals_dispose(&rf);
    c.home_terms.purpose = saved;
    /* an unknown canonical name */
    char *op0 = c.operations[0];
    c.operations[0] = (char *)"exfiltrate";
    assert_int_equal(trust_translate_provider(prof[HK], prof[GZ], &c, NOW, &a, &rf),
                     BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_INVALID, "operations", "exfiltrate", NULL));
    trust_refusals_dispose(&rf);
    c.operations[0] = op0;
    /* a forbidden purpose smuggled past the home step */
    char *p0 = c.purposes[0];
    c.purposes[0] = (char *)"commercial_insurance_actuarial";
    assert_int_equal(trust_translate_provider(prof[HK], prof[GZ], &c, NOW, &a, &rf),
                     BG_ERR_INVAL);
    assert_true(has_refusal(&rf, TRUST_REFUSE_FORBIDDEN_PURPOSE, "purpose",
                            "commercial_insurance_actuarial", "guangzhou"));
    trust_refusals_dispose(&rf);
    c.purposes[0] = p0;
    assert_int_equal(trust_translate_provider(prof[HK], prof[GZ], &c, NOW, &a, &rf), 0);
    trust_agreement_dispose(&a);
    trust_agreement_dispose(NULL);
    trust_canonical_dispose(&c);
    trust_canonical_dispose(NULL);
}

/* ---- all 12 ordered pairs ---- */

static const char *const stats[] = {"count", "sum", "mean", "histogram", "quantiles"};

/* Adds the home terms that together mean |canon| (each term at most once). */
static void req_ops_for(req *r, const conf_profile *p, const char *const *canon, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *t = term_for(p->operations, p->noperations, canon[i]);
        assert_non_null(t);
        bool seen = false;
        for (size_t j = 0; j < r->p.noperations; j++) {
            seen = seen || strcmp(r->ops[j], t) == 0;
        }
        if (!seen) {
            req_op(r, t);
        }
    }
}

static void test_trust_translate_all_pairs(void **state)
{
    (void)state;
    /* minimal number of provider terms for the five statistics */
    const size_t stat_terms[NCITIES] = {[GZ] = 1, [SZ] = 2, [HK] = 3, [MO] = 1};
    for (int h = 0; h < NCITIES; h++) {
        for (int p = 0; p < NCITIES; p++) {
            if (h == p) {
                continue;
            }
            const conf_profile *hp = prof[h];
            const conf_profile *pp = prof[p];
            trust_refusals rf;
            trust_refusals_init(&rf);
            trust_agreement a;
            req r;

            /* 1. scientific research statistics with consent: meaning preserved everywhere */
            req_init(&r, h, p,
                     term_for(hp->purposes, hp->npurposes, "scientific_research"),
                     term_for(hp->legal_bases, hp->nlegal_bases, "consent"),
                     hp->max_duration_days);
            req_ops_for(&r, hp, stats, 5);
            int rv = negotiate(h, p, &r, &a, &rf);
            if (rv != 0) {
                print_error("%s -> %s\n", cities[h], cities[p]);
                dump(&rf);
            }
            assert_int_equal(rv, 0);
            assert_int_equal(a.noperations, 5);
            for (size_t i = 0; i < 5; i++) {
                assert_string_equal(a.operations[i], stats[i]);
            }
            assert_string_equal(a.purposes[0], "scientific_research");
            assert_string_equal(a.legal_basis, "consent");
            assert_string_equal(a.provider_terms.purpose,
                                term_for(pp->purposes, pp->npurposes, "scientific_research"));
            assert_string_equal(a.provider_terms.legal_basis,
                                term_for(pp->legal_bases, pp->nlegal_bases, "consent"));
            assert_int_equal(a.provider_terms.noperations, stat_terms[p]);
            assert_int_equal(a.home_terms.noperations, stat_terms[h]);
            uint32_t k = hp->min_cell_size > pp->min_cell_size ? hp->min_cell_size
                                                               : pp->min_cell_size;
            assert_int_equal(a.min_cell_size, k);
            uint32_t days = hp->max_duration_days < pp->max_duration_days
                                ? hp->max_duration_days
                                : pp->max_duration_days;
            assert_int_equal(a.valid_days, days);
            assert_true(a.valid_until == NOW + (int64_t)days * DAY);
            trust_agreement_dispose(&a);

            /* 2. model training: only between the two cities that allow it */
            const char *mt = term_for(hp->operations, hp->noperations, "model_training");
            assert_non_null(mt);
            req_init(&r, h, p, term_for(hp->purposes, hp->npurposes, "scientific_research"),
                     term_for(hp->legal_bases, hp->nlegal_bases, "consent"), 30);
            req_op(&r, mt);
            rv = negotiate(h, p, &r, &a, &rf);
            if (hp->model_training && pp->model_training) {
                assert_int_equal(rv, 0);
                assert_string_equal(a.operations[0], "model_training");
                trust_agreement_dispose(&a);
            } else if (!hp->model_training) {
                assert_int_equal(rv, BG_ERR_INVAL);
                assert_true(has_refusal(&rf, TRUST_REFUSE_OPERATION, "operations", mt,
                                        cities[h]));
            } else {
                assert_int_equal(rv, BG_ERR_INVAL);
                assert_true(has_refusal(&rf, TRUST_REFUSE_OPERATION, "operations",
                                        "model_training", cities[p]));
            }
            trust_refusals_dispose(&rf);

            /* 3. insurance actuarial work: only hongkong has it, mainland forbids it */
            const char *act =
                term_for(hp->purposes, hp->npurposes, "commercial_insurance_actuarial");
            if (act != NULL) {
                req_init(&r, h, p, act, term_for(hp->legal_bases, hp->nlegal_bases, "consent"),
                         30);
                req_ops_for(&r, hp, stats, 1);
                rv = negotiate(h, p, &r, &a, &rf);
                assert_int_equal(rv, BG_ERR_INVAL);
                trust_refusal_code want = p == MO ? TRUST_REFUSE_UNTRANSLATABLE
                                                  : TRUST_REFUSE_FORBIDDEN_PURPOSE;
                assert_true(has_refusal(&rf, want, "purpose", "commercial_insurance_actuarial",
                                        cities[p]));
                trust_refusals_dispose(&rf);
            }
        }
    }
}

/* ---- property test ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: small, seeded, the same sequence on every run */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rnd_below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static const char *const junk[] = {"统计", "Counts", "count", "scientific_research", "赌博",
                                   "", "machine learning", "estatística", "ＣＯＵＮＴ"};
#define NJUNK (sizeof(junk) / sizeof(junk[0]))

/* A random term: usually from the home profile, often from another city, sometimes junk. */
static const char *random_term(int home, int kind)
{
    uint32_t roll = rnd_below(40);
    if (roll == 0) {
        return junk[rnd_below(NJUNK)];
    }
    const conf_profile *p = prof[roll > 4 ? home : (int)rnd_below(NCITIES)];
    const conf_term *terms = kind == 0 ? p->purposes : kind == 1 ? p->operations : p->legal_bases;
    size_t n = kind == 0 ? p->npurposes : kind == 1 ? p->noperations : p->nlegal_bases;
    return terms[rnd_below((uint32_t)n)].term;
}


static bool term_means(const conf_term *t, const char *canon)
{
    for (size_t i = 0; i < t->ncanonical; i++) {
        if (strcmp(t->canonical[i], canon) == 0) {
            return true;
        }
    }
    return false;
}

static bool city_says(const conf_term *terms, size_t n, const char *canon)
{
    return term_for(terms, n, canon) != NULL;
}

/* Checks one agreement against the proposal and both cities' rules, recomputed here from the
 * profiles rather than trusted from the translator. */
static void check_never_wider(int h, int p, const req *r, const trust_agreement *a)
{
    const conf_profile *hp = prof[h];
    const conf_profile *pp = prof[p];
    /* operations: requested, expressible by the provider, allowed by both */
    for (size_t i = 0; i < a->noperations; i++) {
        const char *op = a->operations[i];
        bool requested = false;
        for (size_t j = 0; j < r->p.noperations; j++) {
            const conf_term *t =
                conf_profile_find_term(hp->operations, hp->noperations, r->p.operations[j]);
            requested = requested || (t != NULL && term_means(t, op));
        }
        assert_true(requested);
        assert_true(city_says(pp->operations, pp->noperations, op));
        if (strcmp(op, "model_training") == 0) {
            assert_true(hp->model_training && pp->model_training);
        }
    }
    assert_true(a->noperations >= 1);
    /* the provider wording covers exactly what is enforced, in its own terms */
    for (size_t i = 0; i < a->noperations; i++) {
        bool covered = false;
        for (size_t j = 0; j < a->provider_terms.noperations; j++) {
            const conf_term *t = conf_profile_find_term(pp->operations, pp->noperations,
                                                        a->provider_terms.operations[j]);
            assert_non_null(t);
            covered = covered || term_means(t, a->operations[i]);
        }
        assert_true(covered);
    }
    /* purposes: as requested, forbidden by neither */
    const conf_term *hpt = conf_profile_find_term(hp->purposes, hp->npurposes, r->p.purpose);
    assert_non_null(hpt);
    const conf_term *ppt =
        conf_profile_find_term(pp->purposes, pp->npurposes, a->provider_terms.purpose);
    assert_non_null(ppt);
    for (size_t i = 0; i < a->npurposes; i++) {
        assert_true(term_means(hpt, a->purposes[i]));
        assert_true(term_means(ppt, a->purposes[i]));
        assert_false(strv_has(hp->forbidden_purposes, hp->nforbidden, a->purposes[i]));
        assert_false(strv_has(pp->forbidden_purposes, pp->nforbidden, a->purposes[i]));
        /* every provider requirement for the purpose is met */
        for (size_t t = 0; t < pp->npurposes; t++) {
            if (term_means(&pp->purposes[t], a->purposes[i]) && pp->purposes[t].nrequires > 0) {
                assert_non_null(a->legal_basis);
                assert_true(strv_has(pp->purposes[t].requires_legal_basis,
                                     pp->purposes[t].nrequires, a->legal_basis));
            }
        }
    }
    if (hpt->nrequires > 0) {
        assert_non_null(a->legal_basis);
        assert_true(strv_has(hpt->requires_legal_basis, hpt->nrequires, a->legal_basis));
    }
    /* datasets: a subset of the request, all held by the provider */
    for (size_t i = 0; i < a->ndatasets; i++) {
        bool requested = false;
        for (size_t j = 0; j < r->p.ndatasets; j++) {
            requested = requested || strcmp(r->p.datasets[j], a->datasets[i]) == 0;
        }
        assert_true(requested);
        size_t cl = strlen(cities[p]);
        assert_true(strncmp(a->datasets[i], cities[p], cl) == 0 && a->datasets[i][cl] == '/');
    }
    /* duration, cell size, queries, epsilon */
    assert_true(a->valid_days >= 1);
    assert_true(a->valid_days <= r->p.valid_days);
    assert_true(a->valid_days <= hp->max_duration_days);
    assert_true(a->valid_days <= pp->max_duration_days);
    assert_true(a->valid_from == NOW);
    assert_true(a->valid_until - a->valid_from == (int64_t)a->valid_days * DAY);
    assert_true(a->min_cell_size >= hp->min_cell_size);
    assert_true(a->min_cell_size >= pp->min_cell_size);
    const uint32_t qcaps[3] = {r->p.max_queries, hp->max_queries, pp->max_queries};
    for (size_t i = 0; i < 3; i++) {
        if (qcaps[i] != 0) {
            assert_true(a->max_queries != 0 && a->max_queries <= qcaps[i]);
        }
    }
    const double ecaps[3] = {r->p.epsilon, hp->max_epsilon, pp->max_epsilon};
    if (r->p.epsilon > 0) { /* a budget was asked for: never above any cap */
        for (size_t i = 0; i < 3; i++) {
            if (ecaps[i] > 0) {
                assert_true(a->epsilon > 0 && a->epsilon <= ecaps[i]);
            }
        }
    } else {
        assert_true(a->epsilon == 0.0); /* none asked: exact aggregates, no budget made up */
    }
}

static void test_trust_translate_property_never_wider(void **state)
{
    (void)state;
    const int runs = 20000;
    int agreed = 0;
    int refused_home = 0;
    int refused_provider = 0;
    for (int run = 0; run < runs; run++) {
        int h = (int)rnd_below(NCITIES);
        int p = (int)rnd_below(NCITIES - 1);
        p = p >= h ? p + 1 : p;
        req r;
        uint32_t days = rnd_below(4) == 0 ? 1 + rnd_below(450)
                                          : 1 + rnd_below(prof[h]->max_duration_days);
        req_init(&r, h, p, random_term(h, 0), rnd_below(6) == 0 ? NULL : random_term(h, 2), days);
        /* half the time, a legal basis the home purpose term asks for */
        const conf_term *pt =
            conf_profile_find_term(prof[h]->purposes, prof[h]->npurposes, r.p.purpose);
        if (pt != NULL && pt->nrequires > 0 && rnd_below(2) == 0) {
            r.p.legal_basis =
                term_for(prof[h]->legal_bases, prof[h]->nlegal_bases,
                         pt->requires_legal_basis[rnd_below((uint32_t)pt->nrequires)]);
        }
        uint32_t nops = 1 + rnd_below(3);
        for (uint32_t i = 0; i < nops; i++) {
            req_op(&r, random_term(h, 1));
        }
        r.p.ndatasets = 1 + rnd_below(3);
        for (size_t i = 1; i < r.p.ndatasets; i++) {
            int dc = rnd_below(30) == 0 ? (int)rnd_below(NCITIES) : p;
            snprintf(r.datasets[i], sizeof(r.datasets[i]), "%s/ds-%u", cities[dc],
                     rnd_below(4));
            r.dsv[i] = r.datasets[i];
        }
        if (rnd_below(100) == 0) {
            r.p.valid_days = 0;
        }
        r.p.max_queries = rnd_below(2) == 0 ? 0 : 1 + rnd_below(1100);
        r.p.epsilon = rnd_below(2) == 0 ? 0 : (double)(1 + rnd_below(200)) / 100.0;

        trust_refusals rf;
        trust_refusals_init(&rf);
        trust_canonical c;
        memset(&c, 0x5a, sizeof(c));
        trust_canonical c0 = c;
        int rv = trust_translate_home(prof[h], &r.p, &c, &rf);
        if (rv != 0) {
            assert_int_equal(rv, BG_ERR_INVAL);
            assert_true(rf.n >= 1);
            assert_memory_equal(&c, &c0, sizeof(c));
            /* every unknown home term is listed, by field and term */
            for (size_t i = 0; i < r.p.noperations; i++) {
                if (conf_profile_find_term(prof[h]->operations, prof[h]->noperations,
                                           r.ops[i]) == NULL) {
                    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations",
                                            r.ops[i], cities[h]));
                }
            }
            if (conf_profile_find_term(prof[h]->purposes, prof[h]->npurposes, r.p.purpose) ==
                NULL) {
                assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", r.p.purpose,
                                        cities[h]));
            }
            if (r.p.valid_days > prof[h]->max_duration_days) {
                assert_true(has_refusal(&rf, TRUST_REFUSE_DURATION, "valid_days", NULL, NULL));
            }
            refused_home++;
            trust_refusals_dispose(&rf);
            continue;
        }
        assert_int_equal(rf.n, 0);
        trust_agreement a;
        memset(&a, 0x5a, sizeof(a));
        trust_agreement a0 = a;
        rv = trust_translate_provider(prof[p], prof[h], &c, NOW, &a, &rf);
        if (rv != 0) {
            assert_int_equal(rv, BG_ERR_INVAL);
            assert_true(rf.n >= 1);
            assert_memory_equal(&a, &a0, sizeof(a));
            /* every requested operation the provider cannot say is listed */
            for (size_t i = 0; i < c.noperations; i++) {
                if (!city_says(prof[p]->operations, prof[p]->noperations, c.operations[i])) {
                    assert_true(has_refusal(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations",
                                            c.operations[i], cities[p]));
                }
            }
            refused_provider++;
        } else {
            check_never_wider(h, p, &r, &a);
            agreed++;
            trust_agreement_dispose(&a);
        }
        trust_canonical_dispose(&c);
        trust_refusals_dispose(&rf);
    }
    print_message("property: %d runs, %d agreed, %d refused at home, %d by the provider\n", runs,
                  agreed, refused_home, refused_provider);
    /* the generator must exercise every outcome, or the property says little */
    assert_true(agreed >= 500);
    assert_true(refused_home >= 500);
    assert_true(refused_provider >= 500);
}

static void test_trust_refusal_code_name_all(void **state)
{
    (void)state;
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_UNTRANSLATABLE), "untranslatable");
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_FORBIDDEN_PURPOSE),
                        "forbidden_purpose");
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_LEGAL_BASIS),
                        "legal_basis_required");
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_OPERATION), "operation_refused");
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_DURATION), "duration_exceeded");
    assert_string_equal(trust_refusal_code_name(TRUST_REFUSE_INVALID), "invalid");
    /* long terms are clipped at a character boundary */
    trust_refusals rf;
    trust_refusals_init(&rf);
    char big[1000];
    for (size_t i = 0; i + 3 < sizeof(big); i += 3) {
        memcpy(big + i, "统", 3);
        big[i + 3] = 0;
    }
    assert_int_equal(trust_refusals_add(&rf, TRUST_REFUSE_INVALID, "purpose", big, "x", "y"), 0);
    assert_true(strlen(rf.items[0].term) <= TRUST_MAX_TERM_BYTES);
    assert_int_equal(strlen(rf.items[0].term) % 3, 0);
    trust_refusals_dispose(&rf);
    trust_refusals_dispose(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_translate_guangzhou_to_hongkong_research_stats),
        cmocka_unit_test(test_trust_translate_hongkong_actuarial_to_mainland_forbidden),
        cmocka_unit_test(test_trust_translate_hongkong_actuarial_needs_consent),
        cmocka_unit_test(test_trust_translate_model_training_to_hongkong_refused),
        cmocka_unit_test(test_trust_translate_home_lists_every_problem),
        cmocka_unit_test(test_trust_translate_home_envelope),
        cmocka_unit_test(test_trust_translate_caps),
        cmocka_unit_test(test_trust_translate_provider_legal_basis),
        cmocka_unit_test(test_trust_translate_provider_revalidates),
        cmocka_unit_test(test_trust_translate_all_pairs),
        cmocka_unit_test(test_trust_translate_property_never_wider),
        cmocka_unit_test(test_trust_refusal_code_name_all),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
