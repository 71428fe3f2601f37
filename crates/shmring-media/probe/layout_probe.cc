// The same probe, compiled as C++ (see layout_probe.c).
#include "layout_probe.c"
