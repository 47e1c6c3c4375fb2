//! Careful file access, shared by the config reader and the state store.
//!
//! Every file mailform reads is opened without blocking (a FIFO planted in
//! place of a file cannot hang a command that holds the lock), checked on the
//! opened descriptor to be a regular file, and read up to a size bound. The
//! files mailform owns in its state folder (state, lock, key, backup) are also
//! opened with `O_NOFOLLOW` and must belong to the current user: a symlink or
//! a file planted by someone else is refused, never followed or trusted.
//! Folders mailform creates are 0700 and files 0600 whatever the umask.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::path::Path;

use zeroize::Zeroizing;

/// Largest secret file read (a client secret is tens of bytes).
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Whether to follow a symlink at the last path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// The user's files (assets.toml, secret files): links are theirs to use.
    Follow,
    /// mailform's own files in the state folder: a link is an attack.
    Refuse,
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("it is a symbolic link; mailform does not follow links in its state folder")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("it belongs to another user (uid {owner}); only its owner's files are trusted")]
    NotOwned { owner: u32 },
}

impl FileError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading as [`open`] does, then reads at most `limit` bytes.
pub fn read(path: &Path, limit: u64, links: Links) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let file = open(path, OpenOptions::new().read(true), links)?;
    read_open(&file, limit)
}

/// Reads an opened regular file, at most `limit` bytes, into a buffer that
/// is zeroized when dropped.
pub fn read_open(file: &File, limit: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    // Sized up front so the buffer holding a secret is never reallocated
    // (a reallocation would leave a copy behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity(file, limit)?));
    read_into(file, limit, &mut buf)?;
    Ok(buf)
}

/// Reads an opened regular file that holds no secret in clear (the state:
/// its tokens are sealed), at most `limit` bytes.
pub fn read_open_plain(file: &File, limit: u64) -> Result<Vec<u8>, FileError> {
    let mut buf = Vec::with_capacity(capacity(file, limit)?);
    read_into(file, limit, &mut buf)?;
    Ok(buf)
}

fn capacity(file: &File, limit: u64) -> Result<usize, FileError> {
    let len = file.metadata()?.len();
    if len > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(usize::try_from(len).unwrap_or(0).saturating_add(1))
}

fn read_into(mut file: &File, limit: u64, buf: &mut Vec<u8>) -> Result<(), FileError> {
    (&mut file).take(limit + 1).read_to_end(buf)?;
    if buf.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(())
}

/// Reads a secret file named in the config (links allowed), trimmed by the
/// caller; the buffer is zeroized when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let bytes = read(path, MAX_SECRET_FILE, Links::Follow)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_string())),
        Err(_) => Err(FileError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))),
    }
}

/// Largest CA bundle (`ca_file`) read: a few hundred certificates.
pub const MAX_CA_FILE: u64 = 1024 * 1024;

/// Opens `path` with `options`, never blocking on a FIFO, and checks the
/// opened file: regular, and with [`Links::Refuse`] not a link and owned by
/// the current user.
pub fn open(path: &Path, options: &OpenOptions, links: Links) -> Result<File, FileError> {
    let mut options = options.clone();
    platform::no_block(&mut options, links);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if platform::is_link_refusal(&e) && links == Links::Refuse => {
            return Err(FileError::Symlink);
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    if links == Links::Refuse {
        platform::check_owner(&meta)?;
    }
    Ok(file)
}

/// Options to create a new file readable and writable by its owner only.
pub fn private_create() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    platform::owner_only(&mut options);
    options
}

/// Permissions for a file only its owner may read and write (0600).
pub fn owner_only() -> std::fs::Permissions {
    platform::owner_only_permissions()
}

/// Makes a rename or link in `dir` survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    platform::sync_dir(dir)
}

/// Creates `dir` (and missing parents) with mode 0700, then checks it.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    platform::dir_owner_only(&mut builder);
    builder.create(dir)?;
    check_private_dir(dir)
}

/// The state folder must be a real folder (not a link), owned by the current
/// user, and writable by nobody else: whoever can write there can replace the
/// state, delete it, or plant a key.
pub fn check_private_dir(dir: &Path) -> Result<(), FileError> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink);
    }
    if !meta.is_dir() {
        return Err(FileError::NotRegular);
    }
    platform::check_owner(&meta)?;
    platform::check_not_shared(&meta)
}

#[cfg(unix)]
mod platform {
    use std::fs::{DirBuilder, Metadata, OpenOptions};
    use std::io;
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};

    use rustix::fs::OFlags;

    use super::{FileError, Links};

    pub fn no_block(options: &mut OpenOptions, links: Links) {
        let mut flags = OFlags::NONBLOCK | OFlags::CLOEXEC;
        if links == Links::Refuse {
            flags |= OFlags::NOFOLLOW;
        }
        options.custom_flags(i32::try_from(flags.bits()).expect("open flags fit in an int"));
    }

    /// `O_NOFOLLOW` on a link fails with `ELOOP`.
    pub fn is_link_refusal(e: &io::Error) -> bool {
        e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }

    pub fn check_owner(meta: &Metadata) -> Result<(), FileError> {
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() == me {
            Ok(())
        } else {
            Err(FileError::NotOwned { owner: meta.uid() })
        }
    }

    pub fn check_not_shared(meta: &Metadata) -> Result<(), FileError> {
        let mode = meta.mode() & 0o777;
        if mode & 0o022 == 0 {
            Ok(())
        } else {
            Err(FileError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("it is writable by others (mode {mode:o}); run chmod 700 on it"),
            )))
        }
    }

    pub fn owner_only(options: &mut OpenOptions) {
        options.mode(0o600);
    }

    pub fn owner_only_permissions() -> std::fs::Permissions {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::Permissions::from_mode(0o600)
    }

    pub fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    pub fn dir_owner_only(builder: &mut DirBuilder) {
        builder.mode(0o700);
    }
}

#[cfg(not(unix))]
mod platform {
    use std::fs::{DirBuilder, Metadata, OpenOptions};
    use std::io;

    use super::{FileError, Links};

    pub fn no_block(_options: &mut OpenOptions, _links: Links) {}
    pub fn is_link_refusal(_e: &io::Error) -> bool {
        false
    }
    pub fn check_owner(_meta: &Metadata) -> Result<(), FileError> {
        Ok(())
    }
    pub fn check_not_shared(_meta: &Metadata) -> Result<(), FileError> {
        Ok(())
    }
    pub fn owner_only(_options: &mut OpenOptions) {}
    pub fn dir_owner_only(_builder: &mut DirBuilder) {}
    pub fn owner_only_permissions() -> std::fs::Permissions {
        std::fs::metadata(".")
            .map(|m| m.permissions())
            .expect("cwd has metadata")
    }
    pub fn sync_dir(_dir: &std::path::Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("state.json");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            read(&fifo, 1024, Links::Refuse),
            Err(FileError::NotRegular)
        ));
    }

    #[test]
    fn links_are_refused_in_the_state_folder_and_followed_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read(&link, 1024, Links::Refuse),
            Err(FileError::Symlink)
        ));
        assert_eq!(read(&link, 1024, Links::Follow).unwrap().as_slice(), b"x");
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![b'x'; 2048]).unwrap();
        assert!(matches!(
            read(&f, 1024, Links::Follow),
            Err(FileError::TooLarge { limit: 1024 })
        ));
    }
}
