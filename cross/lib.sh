# shellcheck shell=bash disable=SC2034  # the variables here are used by the scripts that source it
# Shared by the scripts in cross/: sourced, never run. See cross/README.md.

CROSS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CROSS_DIR/.." && pwd)

# Where the finished binaries go: dist/<target>/{muxagent,muxagent-relay}.
DIST_DIR="$REPO_ROOT/target/cross/dist"
# Cargo's target dir for cross builds: apart from the host's target/ so that neither thrashes
# the other's cache. cross/ci points it outside the clone so that it survives between CI runs.
CROSS_CARGO_TARGET_DIR="${MUXAGENT_CROSS_CACHE:-$REPO_ROOT/target/cross}"
# zig (the musl linker) and cargo-zigbuild, from PyPI, installed by cross/setup.
CROSS_TOOLS_DIR="${MUXAGENT_CROSS_TOOLS:-/opt/muxagent-cross}"
ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.20.1

# The targets `cross/build` builds when given none.
DEFAULT_TARGETS=(
    aarch64-unknown-linux-gnu
    armv7-unknown-linux-gnueabihf
    riscv64gc-unknown-linux-gnu
    x86_64-unknown-linux-musl
    aarch64-unknown-linux-musl
    riscv64gc-unknown-linux-musl
)
# Every target the scripts know: the defaults and the static armv7.
KNOWN_TARGETS=("${DEFAULT_TARGETS[@]}" armv7-unknown-linux-musleabihf)

# Debian packages cross/setup installs. Debian's cross gcc packages and their libc6-dev-*-cross
# are named explicitly; no foreign architecture is added (`libc6:arm64` breaks `qemu-aarch64 -L`).
DEBIAN_PACKAGES=(
    rustc-web cargo-web rust-web-src lld
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
    gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
    qemu-user file
)

say() { printf 'cross: %s\n' "$*" >&2; }
die() {
    printf 'cross: error: %s\n' "$*" >&2
    exit 1
}

# target_info TARGET: sets T_LIBC (gnu or musl), T_GNU (the Debian cross gcc's triple, gnu only),
# T_QEMU (qemu-user binary; empty when the host runs it) and T_SYSROOT (qemu's -L, gnu only).
target_info() {
    T_GNU='' T_QEMU='' T_SYSROOT=''
    case "$1" in
    aarch64-unknown-linux-gnu) T_LIBC=gnu T_GNU=aarch64-linux-gnu T_QEMU=qemu-aarch64 ;;
    armv7-unknown-linux-gnueabihf) T_LIBC=gnu T_GNU=arm-linux-gnueabihf T_QEMU=qemu-arm ;;
    riscv64gc-unknown-linux-gnu) T_LIBC=gnu T_GNU=riscv64-linux-gnu T_QEMU=qemu-riscv64 ;;
    x86_64-unknown-linux-musl) T_LIBC=musl ;;
    aarch64-unknown-linux-musl) T_LIBC=musl T_QEMU=qemu-aarch64 ;;
    armv7-unknown-linux-musleabihf) T_LIBC=musl T_QEMU=qemu-arm ;;
    riscv64gc-unknown-linux-musl) T_LIBC=musl T_QEMU=qemu-riscv64 ;;
    *) die "unknown target '$1'; known: ${KNOWN_TARGETS[*]}" ;;
    esac
    if [[ -n $T_GNU ]]; then T_SYSROOT=/usr/$T_GNU; fi
}

# Use Debian's cargo and rustc (rustc-web, with rust-web-src for -Zbuild-std), never the rustup
# proxies in ~/.cargo/bin: rustup's toolchains cannot use Debian's std source.
use_debian_toolchain() {
    [[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || die "Debian's cargo/rustc are missing: run cross/setup"
    [[ -d /usr/lib/rustlib/src/rust/library ]] || die "rust-web-src is missing: run cross/setup"
    unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC CARGO_BUILD_TARGET
    export PATH="$CROSS_TOOLS_DIR/bin:/usr/bin:/bin:$PATH"
    export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    export RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_DIR="$CROSS_CARGO_TARGET_DIR"
    export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
}

# cargo_for TARGET SUBCOMMAND ARGS...: runs cargo's build or test for TARGET with std built from
# source. glibc targets link with Debian's cross gcc (.cargo/config.toml); musl targets link with
# zig through cargo-zigbuild, which sets the linker and the C compiler for them.
cargo_for() {
    local target=$1 sub=$2
    shift 2
    target_info "$target"
    local -a cmd=(/usr/bin/cargo "$sub")
    if [[ $T_LIBC == musl ]]; then
        [[ -x $CROSS_TOOLS_DIR/bin/cargo-zigbuild ]] || die "cargo-zigbuild is missing: run cross/setup"
        case $sub in
        build) cmd=("$CROSS_TOOLS_DIR/bin/cargo-zigbuild" zigbuild) ;;
        *) cmd=("$CROSS_TOOLS_DIR/bin/cargo-zigbuild" "$sub") ;;
        esac
        # zig brings musl's crt objects, libc and libunwind; rustc has no self-contained ones here.
        local -x CARGO_ENCODED_RUSTFLAGS="-Clink-self-contained=no"
    fi
    "${cmd[@]}" --target "$target" -Zbuild-std=std,panic_abort "$@"
}

# ensure_binfmt QEMU: lets the kernel run foreign binaries through qemu-user (binfmt_misc), so
# that a test running under qemu can itself start the target's binaries (the end-to-end tests
# start a relay and a daemon): qemu-user does not follow execve into a foreign binary. Needs
# root; registered entries last until reboot. Returns non-zero, with a warning, where it can't.
ensure_binfmt() {
    local qemu=$1 magic mask
    local dir=/proc/sys/fs/binfmt_misc
    local ehdr='\x7f\x45\x4c\x46' pad='\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    local elfmask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    case $qemu in
    qemu-aarch64) magic="$ehdr\x02\x01\x01$pad\x02\x00\xb7\x00" mask=$elfmask ;;
    qemu-arm) magic="$ehdr\x01\x01\x01$pad\x02\x00\x28\x00" mask=$elfmask ;;
    qemu-riscv64) magic="$ehdr\x02\x01\x01$pad\x02\x00\xf3\x00" mask=$elfmask ;;
    *) die "no binfmt entry known for $qemu" ;;
    esac
    if [[ -e $dir/$qemu || -e $dir/muxagent-$qemu ]]; then
        return 0
    fi
    if [[ ! -e $dir/register ]] && ! mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null; then
        say "warning: cannot mount binfmt_misc (not root?): tests that start $qemu binaries as child processes will fail"
        return 1
    fi
    if ! printf ':muxagent-%s:M::%s:%s:%s:F' "$qemu" "$magic" "$mask" "$(command -v "$qemu")" >"$dir/register" 2>/dev/null; then
        say "warning: cannot register $qemu with binfmt_misc: tests that start target binaries as child processes will fail"
        return 1
    fi
    say "registered $qemu with binfmt_misc (until reboot), so that tests can start target binaries"
}
