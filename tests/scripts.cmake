# Script-driven tests, included by tests/CMakeLists.txt.

# ---- MPI (label mpi): launched with mpirun; only where the MPI communicator is built ----------
# Open MPI refuses root and more ranks than cores unless told: this machine runs tests as root on
# 2 cores. OMP_NUM_THREADS=1 keeps 4 ranks from fighting over those cores.
if(DROPNET_MPI_ON AND MPIEXEC_EXECUTABLE AND TARGET mpi_data_parallel AND TARGET dropnet-train)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE dn_mpiexec_version ERROR_QUIET)
  set(dn_mpi_flags "")
  if(dn_mpiexec_version MATCHES "Open MPI|OpenRTE")
    set(dn_mpi_flags --oversubscribe --allow-run-as-root)
  endif()
  set(dn_mpi_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
      DROPNET_SOURCE_DIR=${CMAKE_SOURCE_DIR})

  foreach(np 2 4)
    add_test(NAME mpi_data_parallel_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${dn_mpi_flags} $<TARGET_FILE:mpi_data_parallel>)
    set_tests_properties(mpi_data_parallel_np${np} PROPERTIES LABELS mpi TIMEOUT 90
                         ENVIRONMENT "${dn_mpi_env};DROPNET_EXPECT_WORLD=${np}")
  endforeach()

  add_test(NAME mpi_train_rank0_writes
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_train.sh ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:dropnet-train>
                   ${CMAKE_CURRENT_BINARY_DIR}/mpi_train)
  set_tests_properties(mpi_train_rank0_writes PROPERTIES LABELS mpi TIMEOUT 90 ENVIRONMENT "${dn_mpi_env}")

  add_test(NAME mpi_resume_unequal_shards
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_resume.sh ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:dropnet-train>
                   ${CMAKE_CURRENT_BINARY_DIR}/mpi_resume)
  set_tests_properties(mpi_resume_unequal_shards PROPERTIES LABELS mpi TIMEOUT 120 ENVIRONMENT "${dn_mpi_env}")

  foreach(mode stall kill stop)
    add_test(NAME mpi_fault_${mode}
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_fault.sh ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:dropnet-train>
                     ${CMAKE_CURRENT_BINARY_DIR}/mpi_fault_${mode} ${mode})
    set_tests_properties(mpi_fault_${mode} PROPERTIES LABELS mpi TIMEOUT 120 ENVIRONMENT "${dn_mpi_env}")
  endforeach()

  # Two ranks on two emulated GPUs with the emulated NCCL against two CPU ranks (DROPNET_CUDA=EMU).
  if(DN_CUDA_EMU AND DROPNET_NCCL_ON)
    add_test(NAME mpi_nccl_emulated_np2
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_nccl_emu.sh ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:dropnet-train>
                     ${CMAKE_CURRENT_BINARY_DIR}/mpi_nccl_emu)
    set_tests_properties(mpi_nccl_emulated_np2 PROPERTIES LABELS mpi TIMEOUT 300 ENVIRONMENT "${dn_mpi_env}")
  endif()

  # NCCL on one GPU vs LocalComm, and MpiComm's host staging of CUDA buffers (label cuda: these
  # skip without a GPU). The same binary also runs unlaunched under the label mpi.
  if(TARGET mpi_nccl)
    add_test(NAME cuda_dist_nccl_single COMMAND $<TARGET_FILE:mpi_nccl>)
    add_test(NAME cuda_dist_mpirun_np1
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 ${dn_mpi_flags} $<TARGET_FILE:mpi_nccl>)
    set_tests_properties(cuda_dist_nccl_single cuda_dist_mpirun_np1 PROPERTIES LABELS "cuda;mpi" TIMEOUT 120
                         ENVIRONMENT "${dn_mpi_env}")
  endif()
endif()
