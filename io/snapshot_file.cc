#include "io/snapshot_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/crc32c.h"
#include "io/io_error.h"

namespace sluice::snapshot {

void seal(Header header, std::span<std::byte> file) {
  header.body_length = file.size() - kHeaderSize;
  header.body_crc = crc32c(file.data() + kHeaderSize, header.body_length);
  encode_header(header, file);
}

absl::Status write_file_atomically(const std::string& dir, const std::string& name,
                                   std::span<const std::byte> file) {
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string temp = path + std::string(kTempSuffix);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(errno, "create", temp);
  auto fail = [&](int err, std::string_view op, uint64_t offset) {
    ::close(fd);
    ::unlink(temp.c_str());
    return io_error_at(err, op, temp, offset);
  };
  size_t done = 0;
  while (done < file.size()) {
    const size_t n = std::min<size_t>(file.size() - done, size_t{64} << 20);
    const ssize_t w = ::write(fd, file.data() + done, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write", done);
    }
    if (w == 0) return fail(EIO, "write", done);
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) return fail(errno, "fsync", done);
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    return io_error(errno, "close", temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return io_error(err, "rename to " + path, temp);
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return io_error(errno, "open directory", dir);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return io_error(err, "fsync directory", dir);
  return absl::OkStatus();
}

void remove_temp_files(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> doomed;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    const std::string tail = std::string(kSuffix) + std::string(kTempSuffix);
    if (n.size() > tail.size() && n.substr(n.size() - tail.size()) == std::string_view(tail)) {
      doomed.push_back(dir + "/" + std::string(n));
    }
  }
  ::closedir(d);
  for (const std::string& p : doomed) ::unlink(p.c_str());
}

absl::Status prune(const std::string& dir, uint32_t index, uint32_t count, int keep) {
  absl::StatusOr<std::vector<Listed>> files = list(dir);
  if (!files.ok()) return files.status();
  int kept = 0;
  for (const Listed& f : *files) {  // newest first
    if (f.name.shard_index != index || f.name.shard_count != count) continue;
    if (kept < keep) {
      ++kept;
      continue;
    }
    if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) return io_error(errno, "unlink", f.path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MappedSnapshot>> MappedSnapshot::open(const std::string& path,
                                                                     bool verify_body) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(err, "stat", path);
  }
  std::unique_ptr<MappedSnapshot> m(new MappedSnapshot());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return io_error(err, "mmap", path);
    }
    (void)::madvise(p, m->size_, MADV_SEQUENTIAL);
    m->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  absl::StatusOr<Header> h = verify_body ? verify(m->bytes()) : decode_header(m->bytes());
  if (!h.ok()) return absl::DataLossError(absl::StrCat(path, ": ", h.status().message()));
  m->header_ = *h;
  return m;
}

MappedSnapshot::~MappedSnapshot() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace sluice::snapshot
