# PyTorch conformance (label torch): needs Debian's python3-torch; skips (exit 77) without it.
add_test(NAME torch_conformance
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/torch_conformance.py --dump $<TARGET_FILE:dropnet-dump>)
set_tests_properties(torch_conformance PROPERTIES LABELS torch SKIP_RETURN_CODE 77 TIMEOUT 300)

# The PyTorch peer of the end-to-end GPU benchmark builds the shipped nets from resolved configs.
add_test(NAME torch_peer_nets
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/torch_peer_check.sh $<TARGET_FILE:dropnet-summary>)
set_tests_properties(torch_peer_nets PROPERTIES LABELS torch SKIP_RETURN_CODE 77 TIMEOUT 300)
