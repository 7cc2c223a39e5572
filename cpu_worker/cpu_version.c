/* placeholder so the library has a source */
const char *pi_cpu_worker_version(void);
const char *pi_cpu_worker_version(void) { return "0.1.0"; }
