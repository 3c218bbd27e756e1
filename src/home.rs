//! `$MUXAGENT_HOME`: where a machine's daemon and a controller keep their keys and state.
//!
//! The folder is mode 0700 and every secret file 0600, created so from the first byte (never
//! chmod-ed after the fact). Writes of state files are atomic: temp file, fsync, rename, fsync of
//! the folder, so a crash leaves the old or the new file, never half of one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};

/// Failures reading or writing the home folder.
#[derive(Debug)]
pub enum HomeError {
    /// Neither `$MUXAGENT_HOME` nor `$HOME` is set.
    NoHome,
    /// A file operation failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A key file has the wrong size or is readable by others.
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A state file does not parse.
    BadStateFile {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

impl fmt::Display for HomeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HomeError::NoHome => {
                f.write_str("set MUXAGENT_HOME or HOME to choose where muxagent keeps its state")
            }
            HomeError::Io {
                action,
                path,
                source,
            } => {
                write!(f, "could not {action} {}: {source}", path.display())
            }
            HomeError::BadKeyFile { path, reason } => {
                write!(f, "key file {} {reason}", path.display())
            }
            HomeError::BadStateFile { path, reason } => {
                write!(
                    f,
                    "state file {} is damaged ({reason}); move it away to start fresh",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for HomeError {}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HomeError + 'a {
    move |source| HomeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A state folder: the daemon's (`$MUXAGENT_HOME`) or the controller's (`…/controller`).
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$MUXAGENT_HOME`, else `~/.muxagent`; created 0700 if missing.
    pub fn from_env() -> Result<Self, HomeError> {
        let root = match std::env::var_os("MUXAGENT_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("HOME") {
                Some(home) if !home.is_empty() => PathBuf::from(home).join(".muxagent"),
                _ => return Err(HomeError::NoHome),
            },
        };
        Self::open(root)
    }

    /// Use `root`, creating it 0700 if missing and closing it to other users if it was open.
    pub fn open(root: PathBuf) -> Result<Self, HomeError> {
        create_private_dir(&root)?;
        let mode = fs::metadata(&root)
            .map_err(io_error("inspect", &root))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(io_error("restrict to its owner", &root))?;
        }
        Ok(Self { root })
    }

    /// A sub-folder (created 0700), e.g. `controller`.
    pub fn child(&self, name: &str) -> Result<Self, HomeError> {
        Self::open(self.root.join(name))
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Load the identity in `name`, or make one with `rng` and store it (0600) if there is none.
    pub fn load_or_create_identity(
        &self,
        name: &str,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Identity, HomeError> {
        match self.load_identity(name)? {
            Some(identity) => Ok(identity),
            None => {
                let identity = Identity::generate(rng);
                let path = self.path(name);
                write_atomic(&path, &identity.to_secret_bytes()[..], 0o600)?;
                Ok(identity)
            }
        }
    }

    /// Load the identity in `name`, if the file exists.
    pub fn load_identity(&self, name: &str) -> Result<Option<Identity>, HomeError> {
        let path = self.path(name);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let mode = file
            .metadata()
            .map_err(io_error("inspect", &path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(HomeError::BadKeyFile {
                path,
                reason: "is readable by other users; run `chmod 600` on it",
            });
        }
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(SECRET_BYTES_LEN + 1));
        Read::by_ref(&mut file)
            .take(SECRET_BYTES_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        let secret: &[u8; SECRET_BYTES_LEN] =
            bytes[..].try_into().map_err(|_| HomeError::BadKeyFile {
                path: path.clone(),
                reason: "is not 64 bytes long",
            })?;
        Ok(Some(Identity::from_secret_bytes(secret)))
    }

    /// Read a JSON state file, if it exists.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, HomeError> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", &path)(error)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| HomeError::BadStateFile {
                path,
                reason: error.to_string(),
            })
    }

    /// Replace a JSON state file atomically (mode 0600).
    pub fn write_json<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<(), HomeError> {
        let path = self.path(name);
        let mut bytes =
            serde_json::to_vec_pretty(value).map_err(|error| HomeError::BadStateFile {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes, 0o600)
    }
}

/// Create `dir` (and parents) with mode 0700; an existing folder is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), HomeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create folder", dir))
}

/// Write `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HomeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(io_error("create", &temp))?;
    file.write_all(bytes).map_err(io_error("write", &temp))?;
    file.sync_all().map_err(io_error("sync", &temp))?;
    drop(file);
    fs::rename(&temp, path).map_err(io_error("replace", path))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync folder", dir))
}
