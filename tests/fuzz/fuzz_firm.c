/* tests/fuzz/fuzz_firm.c: arbitrary bytes into trust_firm_app_parse(): the JSON, the
 * registration number checks and the embedded PEM CSR (envelope, DER, key, signature,
 * subject). It may not crash, leak or read out of bounds. A refusal leaves the output
 * untouched and carries a message that starts with the member at fault and is valid UTF-8
 * (the gateway returns it in a JSON body). An accepted application, encoded again as JSON,
 * parses to the same fields. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "trust/firms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool prefixed(const char *msg)
{
    static const char *const prefixes[] = {
        "application: ", "name: ", "registration_number: ", "jurisdiction: ", "contact: ",
        "purposes: ",    "csr: "};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* Encodes |a| back into application JSON (jurisdiction always explicit). */
static char *reencode(const trust_firm_app *a)
{
    json_t *ps = json_array();
    for (size_t i = 0; i < a->npurposes; i++) {
        json_array_append_new(ps, json_string(a->purposes[i]));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "name", a->name, "registration_number",
                          a->registration_number, "jurisdiction", a->jurisdiction, "contact",
                          a->contact, "purposes", ps, "csr", a->csr_pem);
    assert(o != NULL);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    trust_firm_app app, again;
    memset(&app, 0xa5, sizeof(app));
    bg_errbuf eb = {{0}};
    int rc = trust_firm_app_parse(data, size, &app, &eb);
    if (rc != 0) {
        assert(rc == BG_ERR_INVAL || rc == BG_ERR_NOMEM);
        assert(app.npurposes == (size_t)0xa5a5a5a5a5a5a5a5u && app.name[0] == (char)0xa5);
        assert(prefixed(eb.msg));
        json_t *j = json_string(eb.msg); /* NULL when not valid UTF-8 */
        assert(j != NULL);
        json_decref(j);
        return 0;
    }
    assert(app.name[0] != '\0' && app.contact[0] != '\0' && app.csr_pem != NULL);
    assert(app.npurposes >= 1 && app.npurposes <= TRUST_FIRM_PURPOSES_MAX);
    assert(strcmp(app.jurisdiction, "mainland") == 0 || strcmp(app.jurisdiction, "hongkong") == 0 ||
           strcmp(app.jurisdiction, "macau") == 0);
    char *s = reencode(&app);
    assert(s != NULL);
    rc = trust_firm_app_parse((const uint8_t *)s, strlen(s), &again, &eb);
    assert(rc == 0);
    assert(strcmp(app.name, again.name) == 0 && strcmp(app.contact, again.contact) == 0 &&
           strcmp(app.registration_number, again.registration_number) == 0 &&
           strcmp(app.jurisdiction, again.jurisdiction) == 0 && app.npurposes == again.npurposes &&
           strcmp(app.csr_pem, again.csr_pem) == 0);
    for (size_t i = 0; i < app.npurposes; i++) {
        assert(strcmp(app.purposes[i], again.purposes[i]) == 0);
    }
    (void)rc;
    free(s);
    trust_firm_app_dispose(&again);
    trust_firm_app_dispose(&app);
    return 0;
}
