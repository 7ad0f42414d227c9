# libFuzzer harnesses (clang, ASan + UBSan), built and run by tools/run_fuzzers.sh: the image-list
# reader, the gzip / IDX reader and the config loader (YAML text -> load and build). A fixed number
# of runs with a fixed seed, so CI is deterministic (explore with
# tools/run_fuzzers.sh --target config --seconds N --seed 0). The config harness compiles the
# library under the sanitizers on its first run (ccache keeps the objects): a long timeout.
find_program(DN_CLANGXX clang++)
if(DN_CLANGXX)
  add_test(NAME libfuzzer_image_list
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/run_fuzzers.sh --target image_list --runs 150000
                   --workdir ${CMAKE_BINARY_DIR}/fuzz)
  add_test(NAME libfuzzer_idx
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/run_fuzzers.sh --target idx --runs 20000
                   --workdir ${CMAKE_BINARY_DIR}/fuzz_idx)
  add_test(NAME libfuzzer_config
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/run_fuzzers.sh --target config --runs 3000
                   --workdir ${CMAKE_BINARY_DIR}/fuzz_config)
  set_tests_properties(libfuzzer_image_list libfuzzer_idx PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 600)
  set_tests_properties(libfuzzer_config PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 1800)
  # The longest tests (a fresh clone: 420 s and 210 s, compiling under clang's sanitizers first) start
  # first, beside the rest, instead of last on their own: ctest orders by COST when it has no history.
  set_tests_properties(libfuzzer_config PROPERTIES COST 10000)
  set_tests_properties(libfuzzer_image_list PROPERTIES COST 5000)
endif()
