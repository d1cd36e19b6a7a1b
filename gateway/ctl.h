/* gateway/ctl.h: subcommands of the operator CLI `baygatectl`. Each takes the arguments after
 * its own name (argv[0] is the subcommand) and returns a process exit code: 0 ok, 1 failure,
 * 2 usage error. */
#ifndef GW_CTL_H
#define GW_CTL_H
int ctl_certs_main(int argc, char **argv); /* gateway/ctl_certs.c */
int ctl_demo_main(int argc, char **argv);  /* gateway/ctl_demo.c */
int ctl_ledger_main(int argc, char **argv); /* gateway/ctl_ledger.c: verify, reconcile */
int ctl_space_main(int argc, char **argv); /* gateway/ctl_space.c */
#endif /* GW_CTL_H */
