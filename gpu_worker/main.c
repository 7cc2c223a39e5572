/* pi-gpu-worker: placeholder until the multi-process runtime lands. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "pi-gpu-worker: the multi-process runtime is not built yet\n");
    return 1;
}
