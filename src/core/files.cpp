#include "core/files.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "core/text.h"

namespace attnsparse {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string open_problem(int err) {
  switch (err) {
    case ENOENT: return "no such file or directory";
    case ELOOP: return "too many levels of symbolic links (a symlink loop?)";
    default: return std::strerror(err);
  }
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

int open_input_file(const std::string& path, uint64_t* size) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail_file(path, "cannot open: {}", open_problem(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail_file(path, "cannot stat: {}", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_file(path, "is {}, expected a regular file", kind_of(st.st_mode));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (size) *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

void require_input_file(const std::string& path) { ::close(open_input_file(path, nullptr)); }

std::string read_input_file(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  const int fd = open_input_file(path, &size);
  if (size > max_bytes) {
    ::close(fd);
    fail_file(path, "is {} bytes, more than the {} bytes this reader accepts", size, max_bytes);
  }
  std::string out(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      fail_file(path, "read failed: {}", std::strerror(err));
    }
    if (r == 0) break;  // shrank while reading: keep what is there
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs,
                               const char* option) {
  struct stat o;
  if (out.empty() || ::stat(out.c_str(), &o) != 0) return;  // (nothing there to destroy)
  for (const std::string& in : inputs) {
    struct stat i;
    if (!in.empty() && ::stat(in.c_str(), &i) == 0 && i.st_dev == o.st_dev && i.st_ino == o.st_ino)
      fail_usage("{} {} is the input file {}; choose another output", option, printable(out, 200), printable(in, 200));
  }
}

std::string resolve_output_path(const std::string& path) {
  if (path.empty()) fail_usage("empty output path");
  std::string p = path;
  for (int hops = 0;; ++hops) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      const int err = errno;
      if (err != ENOENT) fail_file(path, "cannot write: {}", open_problem(err));
      struct stat dir {};
      const std::string parent = parent_of(p);
      if (::stat(parent.c_str(), &dir) != 0)
        fail_file(path, "cannot write: directory '{}' does not exist", parent);
      if (!S_ISDIR(dir.st_mode)) fail_file(path, "cannot write: '{}' is not a directory", parent);
      return p;
    }
    if (S_ISREG(st.st_mode)) return p;
    if (!S_ISLNK(st.st_mode))
      fail_file(path, "is {}; outputs are written only to regular files (give a file name)",
                kind_of(st.st_mode));
    if (hops >= 40) fail_file(path, "cannot write: too many levels of symbolic links (a symlink loop?)");
    char buf[PATH_MAX];
    const ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
    if (n < 0) fail_file(path, "cannot read the symbolic link: {}", std::strerror(errno));
    std::string target(buf, static_cast<size_t>(n));
    p = target.starts_with("/") ? target : parent_of(p) + "/" + target;
  }
}

void write_output_file(const std::string& path, const void* data, size_t bytes) {
  const std::string target = resolve_output_path(path);
  const std::string tmp = target + ".tmp";
  // O_NOFOLLOW / O_NONBLOCK and the fstat check: a symlink, FIFO or device planted at the
  // temporary name is refused instead of written through.
  struct stat old {};
  if (::lstat(tmp.c_str(), &old) == 0 && !S_ISREG(old.st_mode))
    fail_file(path, "cannot create {}: it exists and is not a regular file", tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) fail_file(path, "cannot create {}: {}", tmp, open_problem(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_file(path, "cannot create {}: it exists and is not a regular file", tmp);
  }
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  int err = 0;
  while (done < bytes) {
    const ssize_t w = ::write(fd, p + done, bytes - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail_file(path, "write failed: {}", std::strerror(err));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    fail_file(path, "cannot rename {} to it: {}", tmp, std::strerror(err));
  }
}

void commit_output_file(const std::string& from, const std::string& to) {
  std::string target;
  try {
    target = resolve_output_path(to);
  } catch (...) {
    ::unlink(from.c_str());
    throw;
  }
  if (::rename(from.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(from.c_str());
    fail_file(to, "cannot rename {} to it: {}", from, std::strerror(err));
  }
}

}  // namespace attnsparse
