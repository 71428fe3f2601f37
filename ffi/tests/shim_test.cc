extern "C" int shmring_shim_test_main(int, char**) { return 0; }
