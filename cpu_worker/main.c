/* pi-cpu-worker: placeholder until the multi-process runtime lands. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "pi-cpu-worker: the multi-process runtime is not built yet\n");
    return 1;
}
