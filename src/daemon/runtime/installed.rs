//! Which runtimes this machine can run: each runtime's program looked up on `PATH`, for a
//! device's `ListRuntimes`.

use std::path::{Path, PathBuf};

use muxagent_proto::app::RuntimeInfo;

/// The runtimes and whether their programs are installed.
pub fn list() -> Vec<RuntimeInfo> {
    super::NAMES
        .iter()
        .filter_map(|name| super::by_name(name))
        .map(|runtime| {
            let (available, detail) = match runtime.program() {
                None if runtime.name() == "command" => (true, "any shell command".to_string()),
                None => (true, "an ACP agent: give its command line".to_string()),
                Some(program) => match find_program(&program) {
                    Some(path) => (true, path.display().to_string()),
                    None => (false, format!("{program} is not installed (not on PATH)")),
                },
            };
            RuntimeInfo {
                name: runtime.name().try_into().unwrap_or_default(),
                available,
                detail,
            }
        })
        .collect()
}

/// `program` as a path, or looked up on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        return executable(path).then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| executable(path))
}
