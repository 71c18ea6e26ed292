// Running programs from tests: the attnsparse binary (run_cli) or any shell command line
// (run_command), with the exit status and what the program printed. The one copy of this
// for every test folder (tests/<folder> includes it as "support/run_process.h").
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace attnsparse::testing {

struct ProcessResult {
  int status = -1;  // the exit status; -1 when the program was killed by a signal or did not start
  std::string out;  // what it wrote to stdout (and stderr too, with Output::merged)
  std::string err;  // what it wrote to stderr (empty with Output::merged)
};

// separate: stdout and stderr apart; merged: both into `out` in the order written (2>&1).
enum class Output { separate, merged };

// s in single quotes for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q.push_back(c);
  }
  return q + "'";
}

// Runs `/bin/sh -c line` with stdin from /dev/null and waits for it.
inline ProcessResult run_command(const std::string& line, Output output = Output::separate) {
  ProcessResult r;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return r;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return r;
  }
  const char* cmd = line.c_str();
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    dup2(out_pipe[1], 1);
    dup2(output == Output::merged ? out_pipe[1] : err_pipe[1], 2);
    execl("/bin/sh", "sh", "-c", cmd, static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return r;
  }
  // Both pipes are read as they fill, so a program that writes much to one never blocks.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (const pollfd& p : fds)
    if (p.fd >= 0) close(p.fd);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The shell command line that runs attnsparse with each element of `args` one argument
// (for composing, e.g. behind mpirun).
inline std::string cli_command_line(const std::vector<std::string>& args) {
  std::string line = shell_quote(ATTNSPARSE_BIN);
  for (const std::string& a : args) line += " " + shell_quote(a);
  return line;
}

// attnsparse with `args`, a string in shell syntax ("info 'my model.gguf' --json").
inline ProcessResult run_cli(const std::string& args, Output output = Output::separate) {
  return run_command(shell_quote(ATTNSPARSE_BIN) + " " + args, output);
}

// attnsparse with each element of `args` one argument.
inline ProcessResult run_cli(const std::vector<std::string>& args, Output output = Output::separate) {
  return run_command(cli_command_line(args), output);
}

}  // namespace attnsparse::testing
