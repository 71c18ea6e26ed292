// The trainer's loss log: one CSV row per step and an SVG plot of the curves.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnsparse::train {

struct LogRow {
  int64_t step = 0;
  double train_loss = 0, reg_loss = 0, val_loss = 0, lr = 0, tokens_per_s = 0;  // NaN = none
};

// Reads the rows with step <= max_step of an earlier run's CSV (resume); none if absent.
std::vector<LogRow> read_log_csv(const std::string& path, int64_t max_step);
std::string log_csv_header();
std::string log_csv_row(const LogRow& r);
// Train and validation loss against step (temp file + rename).
void write_loss_svg(const std::string& path, const std::vector<LogRow>& rows, const std::string& title);

}  // namespace attnsparse::train
