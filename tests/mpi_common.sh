# Sourced by the tests/mpi_*.sh scripts after they set $mpiexec: Open MPI refuses root and more
# ranks than cores unless told (these machines run tests as root on 2 cores), and one OpenMP
# thread per rank keeps the ranks from fighting over the cores. Sets the array `flags`.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
flags=()
version=$("$mpiexec" --version 2>&1 || true)
if [[ $version == *"Open MPI"* || $version == *OpenRTE* ]]; then flags=(--oversubscribe --allow-run-as-root); fi
