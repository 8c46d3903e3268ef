#include "cli/argscan.h"

#include <cstdio>

namespace balance::cli {

ArgScanner::ArgScanner(int argc, const char* const* argv, std::span<const OptionDef> defs)
    : argc_(argc < 0 ? 0 : argc), argv_(argv), defs_(defs) {}

ScanItem ArgScanner::next() {
  if (done_) return {};
  if (pos_ != 0) return next_short();
  if (index_ >= argc_ || argv_[index_] == nullptr) {
    done_ = true;
    return {};
  }
  const std::string_view word = argv_[index_];
  if (word == "--") {
    ++index_;
    done_ = true;
    return {};
  }
  if (word.size() < 2 || word[0] != '-') {  // an operand, or a lone "-"
    done_ = true;
    return {};
  }
  if (word[1] == '-') return next_long(word.substr(2));
  word_ = word;
  pos_ = 1;
  return next_short();
}

ScanItem ArgScanner::next_short() {
  const std::string_view word = word_;  // cached: a long cluster must not cost a strlen per letter
  const char c = word[pos_++];
  const std::string_view rest = word.substr(pos_);
  if (rest.empty()) {  // this word is used up
    pos_ = 0;
    ++index_;
  }
  ScanItem item;
  const OptionDef* def = find_short(c);
  if (def == nullptr) {
    item.kind = ScanItem::Kind::Error;
    item.error = "unknown option [-" + printable(std::string_view(&c, 1)) + "]";
    return item;
  }
  item.kind = ScanItem::Kind::Option;
  item.option = def;
  if (def->arg_name.empty()) return item;
  if (!rest.empty()) {  // attached: -t5
    item.value = rest;
    pos_ = 0;
    ++index_;
    return item;
  }
  // Separate: the next word, whatever it looks like (getopt takes "-t -5" as -t with "-5").
  if (index_ >= argc_ || argv_[index_] == nullptr) {
    item.kind = ScanItem::Kind::Error;
    item.error = "option [-" + printable(std::string_view(&c, 1)) + "] needs an argument";
    return item;
  }
  item.value = argv_[index_++];
  return item;
}

ScanItem ArgScanner::next_long(std::string_view body) {
  ++index_;
  const size_t eq = body.find('=');
  const std::string_view name = body.substr(0, eq);
  ScanItem item;
  item.kind = ScanItem::Kind::Error;
  const OptionDef* def = find_long(name);
  if (def == nullptr) {
    item.error = "unknown option [--" + printable(name) + "]";
    return item;
  }
  if (def->arg_name.empty()) {
    if (eq != std::string_view::npos) {
      item.error = "option [--" + std::string(name) + "] takes no argument";
      return item;
    }
  } else if (eq != std::string_view::npos) {
    item.value = body.substr(eq + 1);
  } else if (index_ < argc_ && argv_[index_] != nullptr) {
    item.value = argv_[index_++];
  } else {
    item.error = "option [--" + std::string(name) + "] needs an argument";
    return item;
  }
  item.kind = ScanItem::Kind::Option;
  item.option = def;
  return item;
}

const OptionDef* ArgScanner::find_short(char c) const {
  if (c == '\0') return nullptr;
  for (const OptionDef& d : defs_) {
    if (d.short_name == c) return &d;
  }
  return nullptr;
}

const OptionDef* ArgScanner::find_long(std::string_view name) const {
  if (name.empty()) return nullptr;
  for (const OptionDef& d : defs_) {
    if (d.long_name == name) return &d;
  }
  return nullptr;
}

std::string printable(std::string_view arg, size_t max_len) {
  std::string out;
  const size_t n = arg.size() < max_len ? arg.size() : max_len;
  out.reserve(n + 8);
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<unsigned char>(arg[i]);
    if (b >= 0x20 && b < 0x7F) {
      out += static_cast<char>(b);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned>(b));
      out += hex;
    }
  }
  if (arg.size() > max_len) out += "...";
  return out;
}

}  // namespace balance::cli
