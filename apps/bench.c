/* placeholder until the load generator lands */
#include <stdio.h>
#include "cli.h"
int cmd_bench(int argc, char **argv)
{
    fprintf(stderr, "kaze bench: not built yet\n");
    return 2;
}
