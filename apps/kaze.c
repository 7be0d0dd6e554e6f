/* The kaze program: one binary, a subcommand each. */
#include <stdio.h>
#include <string.h>

#include "kaze/common.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: kaze COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n"
               "  echo     WebSocket echo server (the contract conformance suites test)\n"
               "  bench    load generator: echo throughput and latency, handshakes/s\n"
               "  client   terminal client: lines in, messages out (interactive or scripted)\n"
               "  version  print the version\n"
               "\n"
               "kaze COMMAND --help describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "echo") == 0)
        return cmd_echo(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "client") == 0)
        return cmd_client(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kaze %s\n", KZ_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kaze: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
