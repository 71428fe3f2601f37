// main() for the C++ programs when they are linked outside cargo (as
// ffi/sanitizers.sh does): SHMRING_ENTRY names the program's entry point.
extern "C" int SHMRING_ENTRY(int argc, char** argv);

int main(int argc, char** argv) { return SHMRING_ENTRY(argc, argv); }
