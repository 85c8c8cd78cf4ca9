"""Getting text from the web politely: a fetcher that keeps robots.txt, Crawl-delay, a per-host rate limit and a
size limit (:mod:`.fetcher`), RSS/Atom feed parsing (:mod:`.feeds`), text, link and language extraction
(:mod:`.extract`) and the crawler behind ``tuneforge data crawl`` (:mod:`.crawler`)."""

from tuneforge.data.crawl.crawler import SKIP_REASONS, CrawlOptions, CrawlSummary, crawl, crawl_to_file, same_site
from tuneforge.data.crawl.feeds import FeedEntry, looks_like_feed, parse_feed_entries
from tuneforge.data.crawl.fetcher import USER_AGENT, Fetched, Fetcher, host_of

__all__ = ["SKIP_REASONS", "USER_AGENT", "CrawlOptions", "CrawlSummary", "FeedEntry", "Fetched", "Fetcher", "crawl",
           "crawl_to_file", "host_of", "looks_like_feed", "parse_feed_entries", "same_site"]
