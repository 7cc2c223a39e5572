/* placeholder so the library has a source */
const char *pi_model_version(void);
const char *pi_model_version(void) { return "0.1.0"; }
