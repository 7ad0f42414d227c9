# libFuzzer harness of the image-list reader (clang, ASan + UBSan): a fixed number of runs with a
# fixed seed, so CI is deterministic (explore with tools/run_fuzzers.sh --seconds N --seed 0).
find_program(DN_CLANGXX clang++)
if(DN_CLANGXX)
  add_test(NAME libfuzzer_image_list
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/run_fuzzers.sh --runs 150000 --workdir ${CMAKE_BINARY_DIR}/fuzz)
  set_tests_properties(libfuzzer_image_list PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
