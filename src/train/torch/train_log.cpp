#include "train/torch/train_log.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"

namespace attnsparse::train {

std::vector<LogRow> read_log_csv(const std::string& path, int64_t max_step) {
  std::vector<LogRow> rows;
  std::ifstream f(path);
  if (!f) return rows;
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::vector<double> v;
    std::stringstream ls(line);
    std::string cell;
    while (std::getline(ls, cell, ',')) v.push_back(cell.empty() ? NAN : std::atof(cell.c_str()));
    if (v.size() < 6 || !(v[0] >= 1) || v[0] > max_step) continue;
    rows.push_back({static_cast<int64_t>(v[0]), v[1], v[2], v[3], v[4], v[5]});
  }
  return rows;
}

std::string log_csv_header() { return "step,train_loss,reg_loss,val_loss,lr,tokens_per_s\n"; }

std::string log_csv_row(const LogRow& r) {
  auto num = [](double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); };
  return fmt::format("{},{},{},{},{},{}\n", r.step, num(r.train_loss), num(r.reg_loss),
                     num(r.val_loss), num(r.lr), num(r.tokens_per_s));
}

void write_loss_svg(const std::string& path, const std::vector<LogRow>& rows, const std::string& title) {
  if (rows.empty()) return;
  const double W = 720, H = 420, L = 60, R = 20, Tm = 30, Bm = 45;
  double xmax = std::max<double>(1, rows.back().step), ymin = 1e30, ymax = -1e30;
  for (const auto& r : rows)
    for (double v : {r.train_loss, r.val_loss})
      if (std::isfinite(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  if (!(ymax > ymin)) ymax = ymin + 1;
  auto X = [&](double s) { return L + (W - L - R) * s / xmax; };
  auto Y = [&](double v) { return Tm + (H - Tm - Bm) * (1 - (v - ymin) / (ymax - ymin)); };
  std::string s = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' "
      "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n",
      W, H);
  std::string esc;
  for (char c : title) esc += c == '<' ? "&lt;" : c == '&' ? "&amp;" : std::string(1, c);
  s += fmt::format("<text x='{}' y='18'>{} — loss (nats/token) vs step</text>\n", L, esc);
  for (int i = 0; i <= 5; ++i) {
    double v = ymin + (ymax - ymin) * i / 5, y = Y(v);
    s += fmt::format("<line x1='{}' x2='{}' y1='{:.1f}' y2='{:.1f}' stroke='#ddd'/>", L, W - R, y, y);
    s += fmt::format("<text x='5' y='{:.1f}'>{:.3f}</text>\n", y + 4, v);
    double st = xmax * i / 5;
    s += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>{:.0f}</text>\n", X(st), H - Bm + 18, st);
  }
  s += fmt::format("<text x='{}' y='{}' text-anchor='middle'>step</text>\n", (L + W - R) / 2, H - 8);
  auto poly = [&](double LogRow::*field, const char* color) {
    std::string pts;
    for (const auto& r : rows)
      if (std::isfinite(r.*field)) pts += fmt::format("{:.1f},{:.1f} ", X(r.step), Y(r.*field));
    return fmt::format("<polyline fill='none' stroke='{}' stroke-width='1.5' points='{}'/>\n", color, pts);
  };
  s += poly(&LogRow::train_loss, "#1f77b4");
  s += poly(&LogRow::val_loss, "#d62728");
  s += fmt::format("<text x='{}' y='{}' fill='#1f77b4'>train</text>", W - R - 90, Tm + 14);
  s += fmt::format("<text x='{}' y='{}' fill='#d62728'>val</text>\n</svg>\n", W - R - 40, Tm + 14);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) fail_file(path, "cannot write");
    f << s;
    if (!f) fail_file(path, "write failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace attnsparse::train
