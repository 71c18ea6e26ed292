#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace attnsparse::report {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* palette(size_t i) {
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                 "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"};
  return colors[i % 10];
}

std::string format_number(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::round(v) && std::fabs(v) < 1e9) return fmt::format("{}", static_cast<long long>(v));
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.{}e}", v, std::max(0, digits - 1));
  return fmt::format("{:.{}g}", v, std::max(1, digits));
}

Axis linear_axis(std::string label) {
  Axis a;
  a.label = std::move(label);
  return a;
}

Axis log_axis(std::string label, bool pow2_ticks) {
  Axis a;
  a.label = std::move(label);
  a.scale = Scale::Log;
  a.pow2_ticks = pow2_ticks;
  return a;
}

namespace {

// Unique ids for clip paths: several charts share one HTML document.
std::string next_id(const char* prefix) {
  static std::atomic<unsigned> counter{0};
  return fmt::format("{}{}", prefix, counter.fetch_add(1));
}

// Rough text width in pixels for the 11px sans-serif labels (no font metrics offline).
double text_width(std::string_view s, double font_px = 11) { return 0.58 * font_px * s.size(); }

// One axis mapped to pixels: transformed (log10 or identity) range [lo, hi] onto [p0, p1].
struct Mapper {
  bool log = false;
  double lo = 0, hi = 1, p0 = 0, p1 = 1;
  double tr(double v) const { return log ? std::log10(v) : v; }
  double operator()(double v) const { return p0 + (tr(v) - lo) / (hi - lo) * (p1 - p0); }
  bool valid(double v) const { return std::isfinite(v) && (!log || v > 0); }
};

void settle_range(Mapper& m, double dmin, double dmax, const Axis& axis, double pad_frac) {
  const bool fixed_lo = axis.min && m.valid(*axis.min), fixed_hi = axis.max && m.valid(*axis.max);
  if (fixed_lo) dmin = *axis.min;
  if (fixed_hi) dmax = *axis.max;
  if (!std::isfinite(dmin) || !std::isfinite(dmax)) dmin = m.log ? 1 : 0, dmax = m.log ? 10 : 1;
  double lo = m.tr(dmin), hi = m.tr(dmax);
  if (hi < lo) std::swap(lo, hi);
  const double min_span = m.log ? 0.3 : std::max(1e-12, std::fabs(lo) * 0.1 + 1e-9);
  if (hi - lo < min_span) {
    const double c = 0.5 * (lo + hi);
    lo = c - min_span / 2;
    hi = c + min_span / 2;
    if (!m.log && dmin >= 0 && lo < 0 && !fixed_lo) hi -= lo, lo = 0;
  }
  const double pad = (hi - lo) * pad_frac;
  if (!fixed_lo) lo -= pad;
  if (!fixed_hi) hi += pad;
  m.lo = lo;
  m.hi = hi;
}

// Tick values (data units) for an axis.
std::vector<double> ticks(const Mapper& m, bool pow2, bool integer = false) {
  std::vector<double> t;
  const double eps = 1e-9 * (m.hi - m.lo);
  if (m.log && pow2) {
    const double l2 = std::log10(2.0);
    const double e0 = std::ceil(m.lo / l2 - 1e-9), e1 = std::floor(m.hi / l2 + 1e-9);
    const double step = std::max(1.0, std::ceil((e1 - e0 + 1) / 9));
    for (double e = e0; e <= e1; e += step) t.push_back(std::pow(2.0, e));
    return t;
  }
  if (m.log) {
    const double d0 = std::ceil(m.lo - 1e-9), d1 = std::floor(m.hi + 1e-9);
    const double step = std::max(1.0, std::ceil((d1 - d0 + 1) / 8));
    for (double e = d0; e <= d1; e += step) t.push_back(std::pow(10.0, e));
    if (t.size() < 3) {  // less than ~2 decades: add 2x and 5x
      t.clear();
      for (double e = std::floor(m.lo) - 1; e <= m.hi + 1; e += 1)
        for (double f : {1.0, 2.0, 5.0}) {
          const double v = f * std::pow(10.0, e), lv = std::log10(v);
          if (lv >= m.lo - eps && lv <= m.hi + eps) t.push_back(v);
        }
    }
    if (t.size() < 3) {  // a narrow range (less than a factor of 2.5): evenly spaced round values
      const double a = std::pow(10.0, m.lo), b = std::pow(10.0, m.hi), raw = (b - a) / 5;
      const double mag = std::pow(10.0, std::floor(std::log10(raw)));
      const double step = raw / mag < 1.5 ? mag : raw / mag < 3 ? 2 * mag : raw / mag < 7 ? 5 * mag : 10 * mag;
      t.clear();
      for (double v = std::ceil(a / step) * step; v <= b * (1 + 1e-12); v += step) t.push_back(v);
    }
    return t;
  }
  const double span = m.hi - m.lo, raw = span / 6;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = raw / mag < 1.5 ? mag : raw / mag < 3 ? 2 * mag : raw / mag < 7 ? 5 * mag : 10 * mag;
  if (integer) step = std::max(1.0, std::round(step));
  for (double v = std::ceil(m.lo / step) * step; v <= m.hi + eps; v += step)
    t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::string tick_label(double v, bool pow2) {
  if (pow2) {
    const double e = std::log2(v);
    if (std::fabs(e - std::round(e)) < 1e-9) return fmt::format("2^{}", static_cast<int>(std::round(e)));
  }
  const double a = std::fabs(v);
  if (v != 0 && (a >= 1e5 || a < 1e-3)) {
    const double e = std::log10(a);
    if (std::fabs(e - std::round(e)) < 1e-9) return fmt::format("{}1e{}", v < 0 ? "-" : "", static_cast<int>(std::round(e)));
    return fmt::format("{:.0e}", v);
  }
  return fmt::format("{:g}", v);
}

// One point marker centred on (cx, cy); `inner` goes inside the element (a tooltip).
std::string marker_svg(Marker m, double cx, double cy, const std::string& color, const std::string& inner) {
  switch (m) {
    case Marker::Ring:
      return fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="6" fill="none" stroke="{}" stroke-width="1.6">{}</circle>)",
                         cx, cy, color, inner);
    case Marker::Diamond:
      return fmt::format(R"(<polygon points="{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}" fill="{}">{}</polygon>)",
                         cx, cy - 5, cx + 5, cy, cx, cy + 5, cx - 5, cy, color, inner);
    case Marker::Dot: break;
  }
  return fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="2.8" fill="{}">{}</circle>)", cx, cy, color, inner);
}

std::string svg_open(double w, double h) {
  return fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0:.0f}" height="{1:.0f}" viewBox="0 0 {0:.0f} {1:.0f}" font-family="Helvetica, Arial, sans-serif"><rect width="{0:.0f}" height="{1:.0f}" fill="white"/>)",
      w, h);
}

}  // namespace

std::string chart(const ChartSpec& spec, const std::vector<Series>& series) {
  const double W = std::max(spec.width, 200), H0 = std::max(spec.height, 160);
  const double ml = 66, mr = 16, mt = spec.title.empty() ? 12 : 30, mb = 46;
  Mapper mx{spec.x.scale == Scale::Log}, my{spec.y.scale == Scale::Log};

  // Data range over points, intervals and rules.
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  auto take_y = [&](double v) {
    if (my.valid(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  };
  bool any = false;
  for (const auto& s : series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    const bool has_iv = s.low.size() == s.y.size() && s.high.size() == s.y.size();
    for (size_t i = 0; i < n; ++i) {
      if (!mx.valid(s.x[i]) || !my.valid(s.y[i])) continue;
      any = true;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      take_y(s.y[i]);
      if (has_iv) take_y(s.low[i]), take_y(s.high[i]);
    }
  }
  for (const auto& r : spec.y_rules) take_y(r.first);

  // Legend layout below the plot: entries flow left to right, wrapping.
  struct LegendItem { size_t series; double x, y; };
  std::vector<LegendItem> legend;
  double lx = ml, ly = 0;
  const double entry_h = 15;
  int legend_rows = 0;
  for (size_t i = 0; i < series.size(); ++i) {
    if (series[i].name.empty()) continue;
    const double w = 30 + text_width(series[i].name) + 14;
    if (legend_rows == 0) legend_rows = 1;
    if (lx + w > W - mr && lx > ml) lx = ml, ly += entry_h, ++legend_rows;
    legend.push_back({i, lx, ly});
    lx += w;
  }
  const double legend_h = legend_rows * entry_h + (legend_rows ? 6 : 0);
  const double note_h = spec.note.empty() ? 0 : 16;
  const double H = H0 + legend_h + note_h;

  std::string out = svg_open(W, H);
  if (!spec.title.empty())
    out += fmt::format(R"(<text x="{:.1f}" y="19" font-size="14" font-weight="bold" text-anchor="middle">{}</text>)",
                       W / 2, html_escape(spec.title));
  const double pw = W - ml - mr, ph = H0 - mt - mb;
  out += fmt::format(R"(<rect x="{}" y="{}" width="{:.1f}" height="{:.1f}" fill="#fcfcfc" stroke="#bbb"/>)", ml, mt, pw, ph);
  if (!any) {
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12" text-anchor="middle" fill="#777">no data</text></svg>)",
                       ml + pw / 2, mt + ph / 2);
    return out;
  }
  settle_range(mx, xmin, xmax, spec.x, 0.04);
  settle_range(my, ymin, ymax, spec.y, 0.06);
  mx.p0 = ml, mx.p1 = ml + pw;
  my.p0 = mt + ph, my.p1 = mt;

  // Grid and tick labels.
  const bool xp2 = mx.log && spec.x.pow2_ticks, yp2 = my.log && spec.y.pow2_ticks;
  for (double v : ticks(mx, xp2, spec.x.integer_ticks)) {
    const double x = mx(v);
    out += fmt::format(R"(<line x1="{0:.1f}" y1="{1}" x2="{0:.1f}" y2="{2:.1f}" stroke="#e8e8e8"/><text x="{0:.1f}" y="{3:.1f}" font-size="11" text-anchor="middle" fill="#444">{4}</text>)",
                       x, mt, mt + ph, mt + ph + 15, html_escape(tick_label(v, xp2)));
  }
  for (double v : ticks(my, yp2, spec.y.integer_ticks)) {
    const double y = my(v);
    out += fmt::format(R"(<line x1="{0}" y1="{1:.1f}" x2="{2:.1f}" y2="{1:.1f}" stroke="#e8e8e8"/><text x="{3}" y="{4:.1f}" font-size="11" text-anchor="end" fill="#444">{5}</text>)",
                       ml, y, ml + pw, ml - 5, y + 4, html_escape(tick_label(v, yp2)));
  }
  out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12" text-anchor="middle">{}</text>)", ml + pw / 2,
                     mt + ph + 34, html_escape(spec.x.label));
  out += fmt::format(R"svg(<text x="14" y="{0:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {0:.1f})">{1}</text>)svg",
                     mt + ph / 2, html_escape(spec.y.label));

  // Everything data-driven is clipped to the plot area (fixed ranges may cut it).
  const std::string clip = next_id("clip");
  out += fmt::format(R"svg(<clipPath id="{}"><rect x="{}" y="{}" width="{:.1f}" height="{:.1f}"/></clipPath><g clip-path="url(#{})">)svg",
                     clip, ml, mt, pw, ph, clip);
  for (const auto& r : spec.y_rules) {
    if (!my.valid(r.first)) continue;
    const double y = my(r.first);
    out += fmt::format(R"(<line x1="{}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#999" stroke-dasharray="2,3"/>)", ml, y, ml + pw, y);
    if (!r.second.empty())
      out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10" text-anchor="end" fill="#777">{}</text>)",
                         ml + pw - 4, y - 3, html_escape(r.second));
  }
  for (size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const std::string color = s.color.empty() ? palette(si) : s.color;
    const size_t n = std::min(s.x.size(), s.y.size());
    const bool has_iv = s.low.size() == s.y.size() && s.high.size() == s.y.size();
    if (has_iv) {
      std::vector<size_t> ok;
      for (size_t i = 0; i < n; ++i)
        if (mx.valid(s.x[i]) && my.valid(s.low[i]) && my.valid(s.high[i])) ok.push_back(i);
      if (s.interval == IntervalStyle::Band && ok.size() >= 2) {
        std::string pts;
        for (size_t i : ok) pts += fmt::format("{:.1f},{:.1f} ", mx(s.x[i]), my(s.high[i]));
        for (auto it = ok.rbegin(); it != ok.rend(); ++it)
          pts += fmt::format("{:.1f},{:.1f} ", mx(s.x[*it]), my(s.low[*it]));
        out += fmt::format(R"(<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>)", pts, color);
      } else {
        for (size_t i : ok)
          out += fmt::format(R"(<line x1="{0:.1f}" y1="{1:.1f}" x2="{0:.1f}" y2="{2:.1f}" stroke="{3}" stroke-opacity="0.6"/>)",
                             mx(s.x[i]), my(s.low[i]), my(s.high[i]), color);
      }
    }
    std::string pts, dots, texts;
    for (size_t i = 0; i < n; ++i) {
      if (!mx.valid(s.x[i]) || !my.valid(s.y[i])) continue;
      const double cx = mx(s.x[i]), cy = my(s.y[i]);
      pts += fmt::format("{:.1f},{:.1f} ", cx, cy);
      const std::string tip = fmt::format("<title>{}{}: ({}, {})</title>", html_escape(s.name), s.name.empty() ? "" : " ",
                                          format_number(s.x[i], 4), format_number(s.y[i], 4));
      if (s.markers) dots += marker_svg(s.marker, cx, cy, color, tip);
      if (i < s.labels.size() && !s.labels[i].empty())
        texts += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="9" fill="{}">{}</text>)", cx + 4, cy - 4, color,
                             html_escape(s.labels[i]));
    }
    if (s.line && !pts.empty())
      out += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"{}/>)", pts, color,
                         s.dashed ? R"( stroke-dasharray="5,4")" : "");
    out += dots + texts;
  }
  out += "</g>";

  // Legend.
  const double legend_top = H0 + 2;
  for (const auto& item : legend) {
    const auto& s = series[item.series];
    const std::string color = s.color.empty() ? palette(item.series) : s.color;
    const double y = legend_top + item.y + 8;
    if (s.line)
      out += fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="2"{}/>)",
                         item.x, y, item.x + 22, y, color, s.dashed ? R"( stroke-dasharray="5,4")" : "");
    if ((s.markers || !s.line) && s.marker == Marker::Dot)
      out += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", item.x + 11, y, color);
    else if (s.markers || !s.line)
      out += marker_svg(s.marker, item.x + 11, y, color, "");
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="11" fill="#222">{}</text>)", item.x + 28, y + 4,
                       html_escape(s.name));
  }
  if (!spec.note.empty())
    out += fmt::format(R"(<text x="{}" y="{:.1f}" font-size="10" fill="#555">{}</text>)", ml, H - 5,
                       html_escape(spec.note));
  out += "</svg>";
  return out;
}

namespace {

std::string rgb(double r, double g, double b) {
  auto c = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 255.0))); };
  return fmt::format("#{:02x}{:02x}{:02x}", c(r), c(g), c(b));
}

// Colour of value v; `lum` receives an approximate luminance (for the cell text colour).
std::string cell_color(const HeatmapSpec& spec, double lo, double hi, double v, double* lum) {
  if (!std::isfinite(v)) {
    if (lum) *lum = 0.87;
    return "#dddddd";
  }
  double r, g, b;
  if (spec.colors == ColorMap::Sequential) {
    const double t = hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) : 0.5;
    r = 247 - t * (247 - 8), g = 251 - t * (251 - 48), b = 255 - t * (255 - 107);
  } else {
    const double span = std::max(hi - spec.center, spec.center - lo);
    const double t = span > 0 ? std::clamp((v - spec.center) / span, -1.0, 1.0) : 0.0;
    if (t >= 0) r = 255 - t * (255 - 178), g = 255 - t * (255 - 24), b = 255 - t * (255 - 43);
    else r = 255 + t * (255 - 33), g = 255 + t * (255 - 102), b = 255 + t * (255 - 172);
  }
  if (lum) *lum = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
  return rgb(r, g, b);
}

}  // namespace

std::string heatmap(const HeatmapSpec& spec) {
  const size_t R = spec.values.size();
  size_t C = 0;
  for (const auto& row : spec.values) C = std::max(C, row.size());
  auto value = [&](size_t r, size_t c) {
    return c < spec.values[r].size() ? spec.values[r][c] : std::numeric_limits<double>::quiet_NaN();
  };
  double lo = INFINITY, hi = -INFINITY;
  for (size_t r = 0; r < R; ++r)
    for (size_t c = 0; c < C; ++c)
      if (std::isfinite(value(r, c))) lo = std::min(lo, value(r, c)), hi = std::max(hi, value(r, c));
  if (spec.lo) lo = *spec.lo;
  if (spec.hi) hi = *spec.hi;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi <= lo) hi = lo + 1;

  auto row_name = [&](size_t r) { return r < spec.row_names.size() ? spec.row_names[r] : std::to_string(r); };
  auto col_name = [&](size_t c) { return c < spec.col_names.size() ? spec.col_names[c] : std::to_string(c); };
  double name_w = 10;
  for (size_t r = 0; r < R; ++r) name_w = std::max(name_w, text_width(row_name(r)));
  const double cell = std::clamp(spec.max_width / std::max<size_t>(C, 1), 6.0, 48.0);
  const double ml = 26 + name_w + 6, mt = spec.title.empty() ? 10 : 30;
  const double gw = cell * C, gh = cell * std::max<size_t>(R, 1);
  const double W = std::max(ml + gw + 90, 260.0), H = mt + gh + 42 + (spec.note.empty() ? 0 : 16);
  // Label every k-th row / column so labels do not overlap.
  size_t max_col_len = 1;
  for (size_t c = 0; c < C; ++c) max_col_len = std::max(max_col_len, col_name(c).size());
  const size_t col_step = std::max<size_t>(1, static_cast<size_t>(std::ceil(text_width(std::string(max_col_len, 'x')) / cell)));
  const size_t row_step = std::max<size_t>(1, static_cast<size_t>(std::ceil(12.0 / cell)));

  std::string out = svg_open(W, H);
  if (!spec.title.empty())
    out += fmt::format(R"(<text x="{}" y="19" font-size="14" font-weight="bold">{}</text>)", 8, html_escape(spec.title));
  for (size_t r = 0; r < R; ++r) {
    if (r % row_step == 0)
      out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", ml - 5,
                         mt + cell * r + cell / 2 + 4, html_escape(row_name(r)));
    for (size_t c = 0; c < C; ++c) {
      const double v = value(r, c);
      double lum = 1;
      out += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"{}><title>{} {}, {} {}: {}</title></rect>)",
                         ml + cell * c, mt + cell * r, cell, cell, cell_color(spec, lo, hi, v, &lum),
                         cell >= 10 ? R"( stroke="white" stroke-width="0.5")" : "", html_escape(spec.row_label),
                         html_escape(row_name(r)), html_escape(spec.col_label), html_escape(col_name(c)),
                         std::isfinite(v) ? fmt::format("{:.{}f}", v, std::max(0, spec.decimals + 1)) : "n/a");
      const std::string txt = std::isfinite(v) ? fmt::format("{:.{}f}", v, std::max(0, spec.decimals)) : "";
      if (!txt.empty() && text_width(txt, 10) + 4 <= cell)
        out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10" text-anchor="middle" fill="{}">{}</text>)",
                           ml + cell * c + cell / 2, mt + cell * r + cell / 2 + 3.5, lum < 0.55 ? "white" : "#222", txt);
    }
  }
  for (size_t c = 0; c < C; c += col_step)
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="11" text-anchor="middle">{}</text>)",
                       ml + cell * c + cell / 2, mt + gh + 14, html_escape(col_name(c)));
  out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12" text-anchor="middle">{}</text>)", ml + gw / 2,
                     mt + gh + 32, html_escape(spec.col_label));
  out += fmt::format(R"svg(<text x="12" y="{0:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 12 {0:.1f})">{1}</text>)svg",
                     mt + gh / 2, html_escape(spec.row_label));
  // Colour bar.
  const double bx = ml + gw + 18, bh = std::max(gh, 60.0);
  const int steps = 24;
  for (int i = 0; i < steps; ++i) {
    const double v = lo + (hi - lo) * (i + 0.5) / steps;
    out += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="14" height="{:.2f}" fill="{}"/>)", bx,
                       mt + (steps - 1 - i) * bh / steps, bh / steps + 0.4, cell_color(spec, lo, hi, v, nullptr));
  }
  out += fmt::format(R"(<rect x="{:.1f}" y="{}" width="14" height="{:.1f}" fill="none" stroke="#999"/>)", bx, mt, bh);
  out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10">{}</text><text x="{:.1f}" y="{:.1f}" font-size="10">{}</text>)",
                     bx + 18, mt + 8, html_escape(format_number(hi)), bx + 18, mt + bh, html_escape(format_number(lo)));
  if (spec.colors == ColorMap::Diverging && spec.center > lo && spec.center < hi)
    out += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="10">{}</text>)", bx + 18,
                       mt + bh * (hi - spec.center) / (hi - lo) + 3, html_escape(format_number(spec.center)));
  if (!spec.note.empty())
    out += fmt::format(R"(<text x="8" y="{:.1f}" font-size="10" fill="#555">{}</text>)", H - 5, html_escape(spec.note));
  out += "</svg>";
  return out;
}

std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                  const std::vector<std::vector<std::string>>& cell_classes) {
  auto cls = [&](size_t r, size_t c) {
    std::string k = c == 0 ? "l" : "";
    if (r < cell_classes.size() && c < cell_classes[r].size() && !cell_classes[r][c].empty())
      k += (k.empty() ? "" : " ") + cell_classes[r][c];
    return k.empty() ? std::string() : fmt::format(R"( class="{}")", html_escape(k));
  };
  std::string out = "<table><thead><tr>";
  // A header aligns like its column's cells (left when the first row's cell is "l").
  auto left = [&](size_t c) {
    if (c == 0) return true;
    if (cell_classes.empty() || c >= cell_classes[0].size()) return false;
    const std::string& k = cell_classes[0][c];
    return k == "l" || k.starts_with("l ") || k.ends_with(" l") || k.find(" l ") != std::string::npos;
  };
  for (size_t c = 0; c < header.size(); ++c)
    out += fmt::format("<th{}>{}</th>", left(c) ? R"( class="l")" : "", html_escape(header[c]));
  out += "</tr></thead><tbody>";
  for (size_t r = 0; r < rows.size(); ++r) {
    out += "<tr>";
    for (size_t c = 0; c < rows[r].size(); ++c) out += fmt::format("<td{}>{}</td>", cls(r, c), html_escape(rows[r][c]));
    out += "</tr>";
  }
  out += "</tbody></table>";
  return out;
}

std::string note(std::string_view text) { return fmt::format(R"(<p class="note">{}</p>)", html_escape(text)); }

std::string grid(const std::vector<std::string>& items) {
  std::string out = R"(<div class="grid">)";
  for (const auto& it : items) out += "<div>" + it + "</div>";
  return out + "</div>";
}

namespace {
constexpr const char* kStyle = R"(
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; max-width: 1200px; margin: 24px auto; padding: 0 16px; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 10px; text-align: right; vertical-align: top; }
th { background: #f5f5f5; }
td.l, th.l { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.note { color: #555; font-size: 0.9em; }
.mono, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
.good { color: #1a7f37; } .bad { color: #b42318; }
nav { font-size: 0.9em; margin: 6px 0 12px; } nav a { margin-right: 12px; }
)";
}  // namespace

std::string html_page(const std::string& title, const std::string& body_html) {
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\n<style>{1}</style></head>\n"
      "<body>\n<h1>{0}</h1>\n{2}\n</body></html>\n",
      html_escape(title), kStyle, body_html);
}

std::string html_page(const std::string& title, const std::vector<Section>& sections, const std::string& intro_html) {
  std::string body = intro_html;
  std::string nav;
  for (const auto& s : sections)
    if (!s.id.empty()) nav += fmt::format(R"(<a href="#{}">{}</a>)", html_escape(s.id), html_escape(s.heading));
  if (!nav.empty()) body += "\n<nav>" + nav + "</nav>";
  for (const auto& s : sections) {
    body += s.id.empty() ? fmt::format("\n<h2>{}</h2>\n", html_escape(s.heading))
                         : fmt::format("\n<h2 id=\"{}\">{}</h2>\n", html_escape(s.id), html_escape(s.heading));
    body += s.html;
  }
  return html_page(title, body);
}

std::string loaded_marker_script(size_t expected_svgs) {
  return fmt::format(R"(<script>
(function () {{
  var errors = [];
  window.addEventListener('error', function (e) {{ errors.push(String(e.message)); }});
  function check() {{
    var svgs = document.getElementsByTagName('svg');
    var ok = svgs.length === {0} && errors.length === 0;
    for (var i = 0; i < svgs.length && ok; i++) {{
      if (!(svgs[i] instanceof SVGSVGElement) || svgs[i].childElementCount === 0) ok = false;
    }}
    if (ok) {{
      document.body.setAttribute('data-report-ok', String(svgs.length));
      document.title = document.title + ' [ok]';
    }} else {{
      document.body.setAttribute('data-report-error', 'svgs ' + svgs.length + ' of {0}; ' + errors.join('; '));
    }}
  }}
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', check); else check();
}})();
</script>)",
                     expected_svgs);
}

size_t count_svgs(const std::string& html) {
  size_t n = 0;
  for (size_t pos = html.find("<svg"); pos != std::string::npos; pos = html.find("<svg", pos + 4)) ++n;
  return n;
}

}  // namespace attnsparse::report
