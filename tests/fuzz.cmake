# libFuzzer harness of the image-list reader (clang, ASan + UBSan), 60 s with a fixed seed.
find_program(DN_CLANGXX clang++)
if(DN_CLANGXX)
  add_test(NAME libfuzzer_image_list
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/run_fuzzers.sh --seconds 60 --workdir ${CMAKE_BINARY_DIR}/fuzz)
  set_tests_properties(libfuzzer_image_list PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 400)
endif()
