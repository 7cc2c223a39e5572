/* pi's version, printed by `pictl --version` and `pid --version`. Kept equal
 * to project(pi VERSION ...) in CMakeLists.txt (test_cli_help checks). */
#ifndef PI_VERSION_H
#define PI_VERSION_H

#define PI_VERSION "0.1.0"

#endif
