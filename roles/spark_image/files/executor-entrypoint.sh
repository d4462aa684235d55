#!/bin/bash
# Entrypoint of the datalab.notebooks Spark executor image (written for this collection).
#
# `executor` starts a Spark 3.5.2 executor the way Spark's Kubernetes scheduler expects: the driver
# (client mode) creates each executor pod with the argument `executor` and describes the executor
# in environment variables (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, SPARK_JAVA_OPT_<n>, ...), see
# BasicExecutorFeatureStep in Spark 3.5.2. Nothing here needs to be set by hand.
# Any other command is run as given (e.g. `cp` in an init container, or a shell).
set -eu

usage() {
    echo "usage: ${0##*/} executor          start a Spark executor (environment set by Spark)" >&2
    echo "       ${0##*/} COMMAND [ARG...]  run COMMAND" >&2
}

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

start_executor() {
    # Variables Spark 3.5.2 always puts on an executor container; without them the backend cannot
    # register with the driver. All missing names are reported at once.
    local name missing=()
    for name in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_EXECUTOR_MEMORY \
        SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP SPARK_RESOURCE_PROFILE_ID SPARK_EXECUTOR_POD_NAME; do
        if [[ -z "${!name:-}" ]]; then
            missing+=("$name")
        fi
    done
    if ((${#missing[@]} > 0)); then
        die "cannot start a Spark executor, missing environment variable(s): ${missing[*]}" \
            "(they are set by Spark's Kubernetes scheduler on the executor pods it creates)"
    fi
    [[ "$SPARK_EXECUTOR_CORES" =~ ^[1-9][0-9]*$ ]] \
        || die "SPARK_EXECUTOR_CORES must be a positive integer, got '$SPARK_EXECUTOR_CORES'"
    [[ "$SPARK_RESOURCE_PROFILE_ID" =~ ^[0-9]+$ ]] \
        || die "SPARK_RESOURCE_PROFILE_ID must be a non-negative integer, got '$SPARK_RESOURCE_PROFILE_ID'"

    local java
    if [[ -n "${JAVA_HOME:-}" ]]; then
        java="$JAVA_HOME/bin/java"
        [[ -x "$java" ]] || die "JAVA_HOME is '$JAVA_HOME' but $java is not an executable file"
    else
        java=$(command -v java) || die "JAVA_HOME is not set and no java is on PATH ($PATH)"
    fi

    # JVM options from spark.executor.defaultJavaOptions + extraJavaOptions (split by Spark, one
    # option per variable, Java 17 --add-opens included) and the executor startup -D settings. The
    # values are read by indirect expansion, never evaluated; order is the numeric suffix
    # (SPARK_JAVA_OPT_2 before SPARK_JAVA_OPT_10).
    local -a opt_names=() jvm_opts=()
    local candidate
    for candidate in "${!SPARK_JAVA_OPT_@}"; do
        if [[ "$candidate" =~ ^SPARK_JAVA_OPT_[0-9]+$ ]]; then
            opt_names+=("$candidate")
        fi
    done
    if ((${#opt_names[@]} > 0)); then
        mapfile -t opt_names < <(printf '%s\n' "${opt_names[@]}" | sort -t_ -k4,4n)
        for name in "${opt_names[@]}"; do
            jvm_opts+=("${!name}")
        done
    fi

    # Class path: Spark's configuration (and Hadoop's, when Spark mounts one), then
    # spark.executor.extraClassPath (SPARK_CLASSPATH; Spark documents it as prepended), Spark's
    # jars, and last the image's own SPARK_EXTRA_CLASSPATH.
    local spark_home="${SPARK_HOME:-/opt/spark}"
    local -a cp_parts=()
    local var
    for var in SPARK_CONF_DIR HADOOP_CONF_DIR SPARK_CLASSPATH; do
        if [[ -n "${!var:-}" ]]; then
            cp_parts+=("${!var}")
        fi
    done
    cp_parts+=("$spark_home/jars/*")
    if [[ -n "${SPARK_EXTRA_CLASSPATH:-}" ]]; then
        cp_parts+=("$SPARK_EXTRA_CLASSPATH")
    fi
    local classpath
    classpath=$(IFS=:; printf '%s' "${cp_parts[*]}")

    local -a cmd=(
        "$java"
        "-Xms$SPARK_EXECUTOR_MEMORY"
        "-Xmx$SPARK_EXECUTOR_MEMORY"
        "${jvm_opts[@]}"
        -cp "$classpath"
        org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
        --driver-url "$SPARK_DRIVER_URL"
        --executor-id "$SPARK_EXECUTOR_ID"
        --cores "$SPARK_EXECUTOR_CORES"
        --app-id "$SPARK_APPLICATION_ID"
        --hostname "$SPARK_EXECUTOR_POD_IP"
        --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID"
        --podName "$SPARK_EXECUTOR_POD_NAME"
    )

    # With tini (installed in the official Spark image) as PID 1, signals reach the JVM and orphaned
    # children (e.g. Python workers) are reaped; without it the JVM itself becomes PID 1.
    if [[ -x /usr/bin/tini ]]; then
        exec /usr/bin/tini -s -- "${cmd[@]}"
    fi
    exec "${cmd[@]}"
}

if (($# == 0)); then
    usage
    exit 2
fi

case "$1" in
    executor)
        shift
        (($# == 0)) || die "'executor' takes no arguments (got: $*)"
        start_executor
        ;;
    *)
        exec "$@"
        ;;
esac
