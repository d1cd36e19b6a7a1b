/* gateway/ctl.c: main of `baygatectl`, the operator CLI. Dispatches to one subcommand per
 * file (ctl_certs.c, ctl_demo.c); owns nothing else. Not for: talking to a running gateway
 * (that is its HTTP admin API). */
#include "gateway/ctl.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: baygatectl <command> [options]\n"
          "\n"
          "commands:\n"
          "  certs ca      create a city CA\n"
          "  certs issue   issue a gateway or client certificate from a CA\n"
          "  certs city    create a CA, gateway and demo client certificates for a city\n"
          "  certs bundle  concatenate city CA certificates into a trust bundle\n"
          "  demo          run the multi-city demo\n"
          "  space         list or dump the embedded data space's synthetic datasets\n"
          "  verify        check a receipt, checkpoint or consistency proof offline\n"
          "  reconcile     compare two cities' receipts ledgers\n"
          "\n"
          "`baygatectl <command> --help` describes each command.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "certs") == 0) {
        return ctl_certs_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "space") == 0) {
        return ctl_space_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "verify") == 0 || strcmp(cmd, "reconcile") == 0) {
        return ctl_ledger_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "demo") == 0) {
        return ctl_demo_main(argc - 1, argv + 1);
    }
    fprintf(stderr, "baygatectl: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
