/* placeholder so the library has a source */
const char *pi_gpu_worker_version(void);
const char *pi_gpu_worker_version(void) { return "0.1.0"; }
