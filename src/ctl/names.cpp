#include "ctl/names.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/argscan.h"
#include "ctl/segment.h"

namespace balance::ctl {
namespace {

constexpr size_t kMaxEncodedBind = 160;  // keeps the stem well below NAME_MAX (255)

bool kept_as_is(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
         ch == '-';
}

uint64_t fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (const char ch : text) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ull;
  }
  return h;
}

std::string encode_bind(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto ch = static_cast<unsigned char>(c);
    if (kept_as_is(ch)) {
      out += c;
    } else {
      out += '_';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  if (out.size() <= kMaxEncodedBind) return out;
  char hash[24];
  std::snprintf(hash, sizeof hash, "+%016llx", static_cast<unsigned long long>(fnv1a(text)));
  return out.substr(0, kMaxEncodedBind - 17) + hash;  // '+' never comes out of the escaping
}

}  // namespace

std::string run_directory() {
  const char* env = std::getenv("BALANCE_RUNDIR");
  if (env != nullptr && *env != '\0') return env;
  if (::geteuid() == 0) return "/var/run/balance";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/balance";
  return "/tmp/balance-" + std::to_string(::geteuid());
}

void settle_run_directory() {
  const char* env = std::getenv("BALANCE_RUNDIR");
  if (env == nullptr || *env == '\0' || *env == '/') return;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return;  // left relative: nothing better to do
  ::setenv("BALANCE_RUNDIR", (std::string(cwd) + "/" + env).c_str(), 1);
}

std::string segment_stem(uint16_t port, std::string_view bind_text) {
  std::string stem = "balance." + std::to_string(port);
  if (!bind_text.empty()) stem += "." + encode_bind(bind_text);
  return stem;
}

std::string instance_label(uint16_t port, std::string_view bind_text) {
  std::string label = "port " + std::to_string(port);
  if (!bind_text.empty()) label = std::string(bind_text) + " " + label;
  return label;
}

std::string shown_path(std::string_view path) { return cli::printable(path, 200); }

}  // namespace balance::ctl
