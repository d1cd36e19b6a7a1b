/* gateway/ctl_space.c: `baygatectl space`, a look inside the embedded reference data space
 * without a running gateway: which datasets a city holds, their fields, and the synthetic rows
 * themselves as CSV (the same generator and seed as the gateway, so tests and analysts can
 * compute the truth independently of the gateway). Not for: real data, which never leaves a
 * city's own data space. */
#include "gateway/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "space/data.h"

static void usage(FILE *f)
{
    fputs("usage: baygatectl space list --city CITY [--rows N] [--seed S]\n"
          "       baygatectl space dump --city CITY --dataset NAME [--rows N] [--seed S]\n"
          "\n"
          "list: the datasets CITY holds by default, with their fields.\n"
          "dump: the synthetic rows of CITY's dataset NAME as CSV on stdout.\n"
          "--rows N (default 100000, 1000..10000000) and --seed S (default 1) must match the\n"
          "gateway's upstream.rows and upstream.seed to see the same rows.\n",
          f);
}

int ctl_space_main(int argc, char **argv)
{
    static const struct option opts[] = {{"city", required_argument, NULL, 'c'},
                                          {"dataset", required_argument, NULL, 'd'},
                                          {"rows", required_argument, NULL, 'r'},
                                          {"seed", required_argument, NULL, 's'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    if (argc < 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "dump") != 0)) {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    bool dump = strcmp(argv[1], "dump") == 0;
    const char *city = NULL, *dataset = NULL;
    unsigned long long rows = 100000, seed = 1;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c':
            city = optarg;
            break;
        case 'd':
            dataset = optarg;
            break;
        case 'r':
            rows = strtoull(optarg, &end, 10);
            break;
        case 's':
            seed = strtoull(optarg, &end, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (end != NULL && *end != 0) {
            fprintf(stderr, "baygatectl space: not a number: %s\n", optarg);
            return 2;
        }
    }
    if (city == NULL || (dump && dataset == NULL)) {
        usage(stderr);
        return 2;
    }
    space_db *db = NULL;
    bg_errbuf eb = {{0}};
    const char *const one[1] = {dataset};
    if (space_db_new(&db, city, rows, seed, dump ? one : NULL, dump ? 1 : 0, &eb) != 0) {
        fprintf(stderr, "baygatectl space: %s\n", eb.msg);
        return 1;
    }
    int rc = 0;
    if (dump) {
        rc = space_db_dump_csv(db, dataset, stdout) == 0 ? 0 : 1;
    } else {
        for (size_t i = 0; i < space_db_count(db); i++) {
            const space_schema *s = space_db_schema_at(db, i);
            printf("%s/%s (%llu rows): %s\n", city, s->name,
                   (unsigned long long)space_db_rows(db, s->name), s->description);
            for (size_t f = 0; f < s->nfields; f++) {
                const space_field *fl = &s->fields[f];
                if (fl->type == SPACE_FIELD_NUMERIC) {
                    printf("  %-22s numeric %g..%g %s (resolution %g)\n", fl->name, fl->lo,
                           fl->hi, fl->unit != NULL ? fl->unit : "", fl->resolution);
                } else {
                    printf("  %-22s categorical:", fl->name);
                    for (size_t k = 0; k < fl->ncats; k++) {
                        printf(" %s", fl->cats[k]);
                    }
                    printf("\n");
                }
            }
        }
    }
    space_db_free(db);
    return rc;
}
