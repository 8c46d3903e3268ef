// The terminal side of the shell: GNU readline with history and completion of command names.
#include <readline/history.h>
#include <readline/readline.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ctl/commands.h"
#include "ctl/input.h"

namespace balance::ctl {
namespace {

// Readline's generator protocol: called with state 0 first, then until it returns null.
char* command_generator(const char* text, int state) {
  static size_t next = 0;
  if (state == 0) next = 0;
  const std::string_view prefix(text);
  const auto& names = command_names();
  while (next < names.size()) {
    const std::string_view name = names[next++];
    if (name.substr(0, prefix.size()) == prefix) return strndup(name.data(), name.size());
  }
  return nullptr;
}

// Completes command names in the first word only; never file names.
char** complete_command(const char* text, int start, int /*end*/) {
  rl_attempted_completion_over = 1;
  for (int i = 0; i < start; ++i) {
    if (rl_line_buffer[i] != ' ' && rl_line_buffer[i] != '\t') return nullptr;
  }
  return rl_completion_matches(text, command_generator);
}

bool blank(const char* line) { return line[std::strspn(line, " \t")] == '\0'; }

class TerminalInput final : public Input {
 public:
  TerminalInput() {
    rl_readline_name = "balance";
    rl_attempted_completion_function = complete_command;
    rl_outstream = stdout;
    using_history();
  }
  ~TerminalInput() override { clear_history(); }

  bool ended_the_line() const override {
    const char* paste = rl_variable_value("enable-bracketed-paste");
    return rl_eof_found != 0 && paste != nullptr && std::strcmp(paste, "on") == 0;
  }

  InputStatus read(const std::string& prompt, std::string& line) override {
    char* raw = readline(prompt.c_str());
    if (raw == nullptr) return InputStatus::End;
    const size_t length = std::strlen(raw);
    InputStatus status = InputStatus::TooLong;
    if (length <= kMaxLineLength) {
      line.assign(raw, length);
      if (!blank(raw)) add_history(raw);
      status = InputStatus::Line;
    }
    std::free(raw);
    return status;
  }
};

}  // namespace

std::unique_ptr<Input> terminal_input() { return std::make_unique<TerminalInput>(); }

}  // namespace balance::ctl
