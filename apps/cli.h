/* Helpers the kaze subcommands share: option values, limits, threads. */
#ifndef KAZE_APP_CLI_H
#define KAZE_APP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a size with an optional K/M/G suffix (powers of 1024); exits on error. */
size_t cli_size(const char *opt, const char *s);
/* Parses a non-negative integer no larger than max; exits on error. */
unsigned long cli_uint(const char *opt, const char *s, unsigned long max);
/* Raises the open-file limit to the hard limit; returns the new soft limit. */
unsigned long cli_raise_nofile(void);
/* The number of online CPUs, at least 1. */
unsigned cli_cpus(void);

/* Subcommands: each takes argv with argv[0] = its own name; returns the exit status. */
int cmd_echo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_client(int argc, char **argv);

#endif
