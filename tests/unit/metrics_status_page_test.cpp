// Tests that the status page is self-contained (nothing loaded from another host) and polls
// /status.json.
#include "metrics/status_page.h"

#include <gtest/gtest.h>

#include <string>

namespace metrics = balance::metrics;

TEST(MetricsStatusPage, IsACompleteHtmlDocument) {
  const std::string page(metrics::status_page_html());
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  EXPECT_NE(page.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_NE(page.find("</html>"), std::string::npos);
}

TEST(MetricsStatusPage, LoadsNothingFromElsewhere) {
  const std::string page(metrics::status_page_html());
  EXPECT_EQ(page.find("<script src"), std::string::npos);
  EXPECT_EQ(page.find("stylesheet"), std::string::npos);
  EXPECT_EQ(page.find("@import"), std::string::npos);
  EXPECT_EQ(page.find("@font-face"), std::string::npos);
  EXPECT_EQ(page.find("url("), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  // The only absolute URL is the SVG namespace name, which is never fetched.
  std::string rest = page;
  for (size_t pos = rest.find("http://"); pos != std::string::npos; pos = rest.find("http://", pos + 1)) {
    EXPECT_EQ(rest.compare(pos, 26, "http://www.w3.org/2000/svg"), 0) << rest.substr(pos, 40);
  }
}

TEST(MetricsStatusPage, PollsStatusJsonAboutOnceASecond) {
  const std::string page(metrics::status_page_html());
  EXPECT_NE(page.find("fetch(\"status.json\""), std::string::npos);
  EXPECT_NE(page.find("PERIOD_MS = 1000"), std::string::npos);
}
