/* placeholder so the library has a source */
#include "pi.pb-c.h"
const char *pi_proto_version(void);
const char *pi_proto_version(void) { return "0.1.0"; }
