//! The data directory: identity key, configuration, database, control socket
//! and the lock that keeps one daemon per directory.
//!
//! ```text
//! <data dir>/
//!   identity.key    32-byte Ed25519 secret, mode 0600 (libp2p and, later, iroh key)
//!   encryption.keys the device's X25519 encryption keys, every version kept
//!                   (version u32 BE ‖ secret, oldest first), mode 0600
//!   config.toml     NodeConfig, commented
//!   profile.toml    display name
//!   db/             sled database
//!   daemon.lock     held by the running daemon
//!   run/            mode 0700, created before the socket is bound in it
//!     control.sock  the daemon's control API (mode 0600)
//!   storage.reserve 1 MiB kept free for reopening the database after the disk fills up
//! ```
//!
//! The directory is created with mode 0700 and its files with 0600. The
//! daemon refuses a directory owned by another user or writable by group or
//! others ([`DataDir::check_private`]): whoever can write there can replace
//! the identity key, the configuration or the database.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use meshchat_crdt::{e2e::DeviceKeyring, Identity};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, NodeConfig};

const KEY_FILE: &str = "identity.key";
const ENCRYPTION_KEYS_FILE: &str = "encryption.keys";
const CONFIG_FILE: &str = "config.toml";
const PROFILE_FILE: &str = "profile.toml";
const LOCK_FILE: &str = "daemon.lock";
const SOCKET_FILE: &str = "control.sock";
const RUN_DIR: &str = "run";
const DB_DIR: &str = "db";
const RESERVE_FILE: &str = "storage.reserve";

/// A meshchat data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// The user's own profile as stored locally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalProfile {
    /// Display name.
    pub name: Option<String>,
}

/// Errors using a data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// `init` found an identity already there.
    #[error("{0} is already initialised (identity.key exists)")]
    AlreadyInitialised(PathBuf),
    /// No identity: `meshchat init` has not been run.
    #[error("{0} has no identity: run `meshchat init` first")]
    NotInitialised(PathBuf),
    /// The key file is not a 32-byte secret.
    #[error("{0} is not a valid identity key (expected 32 bytes)")]
    BadKey(PathBuf),
    /// The encryption keys file does not decode.
    #[error("{path} is not a valid encryption keys file: {reason}")]
    BadEncryptionKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: meshchat_crdt::e2e::DecodeError,
    },
    /// Another daemon holds the lock.
    #[error("another meshchat daemon is already running for {0}")]
    Locked(PathBuf),
    /// Configuration error.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another user owns the directory.
    #[error(
        "{path} belongs to another user (uid {owner}; you are uid {me}): anyone who owns it can \
         replace your key and read your messages. Use a data directory of your own \
         (--data-dir), or, if it is yours, take it back: sudo chown -R {me} {path}"
    )]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Group or others may write in the directory.
    #[error(
        "{path} is writable by other users (mode {mode:04o}): they could replace your key or \
         your messages. Fix it with: chmod 700 {path}"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Holds the daemon lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The platform default (for example `~/.local/share/meshchat` on Linux).
    pub fn default_root() -> PathBuf {
        directories::ProjectDirs::from("", "", "meshchat")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".meshchat"))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `init` has run here.
    pub fn is_initialised(&self) -> bool {
        self.root.join(KEY_FILE).exists()
    }

    /// Creates the directory, a new identity (mode 0600), the commented
    /// `config.toml` and the profile. Refuses to overwrite an identity.
    pub fn init(&self, name: Option<&str>, config: &NodeConfig) -> Result<Identity, DataDirError> {
        // 0700 from the first moment, not chmod'ed afterwards.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_at(&self.root))?;
        // A directory that already existed is made private too.
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(io_at(&self.root))?;
        let key_path = self.root.join(KEY_FILE);
        let identity = Identity::generate();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    DataDirError::AlreadyInitialised(self.root.clone())
                }
                _ => DataDirError::Io {
                    path: key_path.clone(),
                    source: e,
                },
            })?;
        file.write_all(&identity.secret_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_at(&key_path))?;
        self.device_keys()?;
        let config_path = self.root.join(CONFIG_FILE);
        if !config_path.exists() {
            write_private(&config_path, config.commented_toml().as_bytes())?;
        }
        self.set_profile(&LocalProfile {
            name: name.map(str::to_owned),
        })?;
        Ok(identity)
    }

    /// Loads the identity.
    pub fn identity(&self) -> Result<Identity, DataDirError> {
        let path = self.root.join(KEY_FILE);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataDirError::NotInitialised(self.root.clone()),
            _ => DataDirError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| DataDirError::BadKey(path.clone()))?;
        Ok(Identity::from_secret_bytes(secret))
    }

    /// Loads the device's encryption keys, creating the file (mode 0600, one
    /// fresh key) in a data dir made before end-to-end encryption. A file
    /// that exists but does not decode is an error, never replaced: older
    /// keys in it may still open key shares and mail.
    pub fn device_keys(&self) -> Result<DeviceKeyring, DataDirError> {
        let path = self.root.join(ENCRYPTION_KEYS_FILE);
        match fs::read(&path) {
            Ok(bytes) => DeviceKeyring::from_bytes(&bytes)
                .map_err(|reason| DataDirError::BadEncryptionKeys { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = DeviceKeyring::generate();
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_at(&path))?;
                file.write_all(&keys.to_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_at(&path))?;
                Ok(keys)
            }
            Err(e) => Err(DataDirError::Io { path, source: e }),
        }
    }

    /// Loads `config.toml`, or the defaults when there is none.
    pub fn config(&self) -> Result<NodeConfig, DataDirError> {
        let path = self.root.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(NodeConfig::default());
        }
        Ok(NodeConfig::load(&path)?)
    }

    /// Loads the local profile.
    pub fn profile(&self) -> LocalProfile {
        fs::read_to_string(self.root.join(PROFILE_FILE))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Saves the local profile.
    pub fn set_profile(&self, profile: &LocalProfile) -> Result<(), DataDirError> {
        let path = self.root.join(PROFILE_FILE);
        let text = toml::to_string(profile).unwrap_or_default();
        write_private(&path, text.as_bytes())
    }

    /// Refuses a directory another user owns or that group or others may
    /// write in (with an error that says how to fix it); warns when others
    /// may read it. The daemon checks this before it opens anything.
    pub fn check_private(&self) -> Result<(), DataDirError> {
        let meta = fs::metadata(&self.root).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataDirError::NotInitialised(self.root.clone()),
            _ => DataDirError::Io {
                path: self.root.clone(),
                source: e,
            },
        })?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(DataDirError::NotOwned {
                path: self.root.clone(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DataDirError::Writable {
                path: self.root.clone(),
                mode,
            });
        }
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %self.root.display(),
                mode = format!("{mode:04o}"),
                "other users can read this data directory (your messages are in it): chmod 700 it"
            );
        }
        Ok(())
    }

    /// Takes the one-daemon-per-directory lock.
    pub fn lock(&self) -> Result<DirLock, DataDirError> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked(self.root.clone())),
            Err(std::fs::TryLockError::Error(source)) => Err(DataDirError::Io { path, source }),
        }
    }

    /// The sled database directory.
    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_DIR)
    }

    /// The control socket, inside the private `run/` directory.
    pub fn socket_path(&self) -> PathBuf {
        self.root.join(RUN_DIR).join(SOCKET_FILE)
    }

    /// The file holding space in reserve for recovering from a full disk.
    pub(crate) fn reserve_path(&self) -> PathBuf {
        self.root.join(RESERVE_FILE)
    }
}

/// Writes a file only its owner can read (mode 0600 when created).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_a_private_key_and_refuses_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("d"));
        assert!(matches!(
            dir.identity(),
            Err(DataDirError::NotInitialised(_))
        ));
        let id = dir.init(Some("alice"), &NodeConfig::default()).unwrap();
        assert_eq!(dir.identity().unwrap().public(), id.public());
        let mode = fs::metadata(dir.root().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dir.profile().name.as_deref(), Some("alice"));
        assert!(matches!(
            dir.init(None, &NodeConfig::default()),
            Err(DataDirError::AlreadyInitialised(_))
        ));
        assert_eq!(dir.config().unwrap(), NodeConfig::default());
    }

    #[test]
    fn encryption_keys_are_made_once_kept_and_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("d"));
        dir.init(None, &NodeConfig::default()).unwrap();
        let first = dir.device_keys().unwrap().current().public();
        assert_eq!(dir.device_keys().unwrap().current().public(), first);
        // A data dir made before e2e gets its keys on first use.
        let path = dir.root().join(ENCRYPTION_KEYS_FILE);
        fs::remove_file(&path).unwrap();
        let made = dir.device_keys().unwrap().current().public();
        assert_ne!(made, first);
        assert_eq!(mode_of(&path), 0o600);
        // A damaged file is an error, not silently replaced.
        fs::write(&path, b"junk").unwrap();
        assert!(matches!(
            dir.device_keys(),
            Err(DataDirError::BadEncryptionKeys { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"junk");
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_makes_the_directory_and_its_files_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("a/b"));
        dir.init(Some("alice"), &NodeConfig::default()).unwrap();
        assert_eq!(mode_of(dir.root()), 0o700);
        assert_eq!(mode_of(&dir.root().join(CONFIG_FILE)), 0o600);
        assert_eq!(mode_of(&dir.root().join(ENCRYPTION_KEYS_FILE)), 0o600);
        assert_eq!(mode_of(&dir.root().join(PROFILE_FILE)), 0o600);
        dir.check_private().unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("d"));
        dir.init(None, &NodeConfig::default()).unwrap();
        for mode in [0o777, 0o770, 0o702] {
            fs::set_permissions(dir.root(), fs::Permissions::from_mode(mode)).unwrap();
            let error = dir.check_private().unwrap_err();
            assert!(matches!(error, DataDirError::Writable { .. }), "{mode:o}");
            assert!(error.to_string().contains("chmod 700"), "{error}");
        }
        // Readable by others is allowed (with a warning); writable is not.
        fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o755)).unwrap();
        dir.check_private().unwrap();
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let dir = if me == 0 {
            // As root, give a fresh directory away.
            let dir = DataDir::new(tmp.path().join("theirs"));
            dir.init(None, &NodeConfig::default()).unwrap();
            std::os::unix::fs::chown(dir.root(), Some(65534), None).unwrap();
            dir
        } else {
            // Otherwise, a directory root owns.
            DataDir::new("/")
        };
        let error = dir.check_private().unwrap_err();
        assert!(
            matches!(error, DataDirError::NotOwned { owner, .. } if owner != me),
            "{error}"
        );
        assert!(error.to_string().contains("chown"), "{error}");
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let held = dir.lock().unwrap();
        assert!(matches!(dir.lock(), Err(DataDirError::Locked(_))));
        drop(held);
        dir.lock().unwrap();
    }
}
