import { describe, expect, it } from 'vitest';
import { extractSearch, extractSearchFromUrl } from '../../filter/safeguarding/search-terms';

const CASES: Array<[string, string | null, string?, string?]> = [
  ['https://www.google.com/search?q=how+to+tie+a+noose&rlz=1C1', 'how to tie a noose', 'google', 'search'],
  ['https://www.google.co.uk/search?client=firefox-b-d&q=self%20harm', 'self harm', 'google', 'search'],
  ['https://www.google.com/images?q=thinspo', 'thinspo', 'google', 'search'],
  ['https://www.google.com/complete/search?q=sui&client=gws-wiz', 'sui', 'google', 'suggest'],
  ['https://www.google.com/url?q=https://example.org', null],
  ['https://www.google.com/searchbyimage?q=x', null],
  ['https://www.bing.com/search?q=buy+weed&form=QBLH', 'buy weed', 'bing', 'search'],
  ['https://www.bing.com/images/search?q=zombie+knife', 'zombie knife', 'bing', 'search'],
  ['https://www.bing.com/AS/Suggestions?pt=page.home&qry=pro+an&cp=6', 'pro an', 'bing', 'suggest'],
  ['https://duckduckgo.com/?q=kill+myself&t=h_', 'kill myself', 'duckduckgo', 'search'],
  ['https://html.duckduckgo.com/html/?q=suicide', 'suicide', 'duckduckgo', 'search'],
  ['https://duckduckgo.com/ac/?q=self&kl=wt-wt', 'self', 'duckduckgo', 'suggest'],
  ['https://duckduckgo.com/about', null],
  ['https://uk.search.yahoo.com/search?p=k+hole&fr=yfp-t', 'k hole', 'yahoo', 'search'],
  ['https://search.yahoo.com/search;_ylt=AwrE?p=thigh+gap', 'thigh gap', 'yahoo', 'search'],
  ['https://www.ecosia.org/search?method=index&q=beheading+video', 'beheading video', 'ecosia', 'search'],
  ['https://ac.ecosia.org/autocomplete?q=sext&type=list', 'sext', 'ecosia', 'suggest'],
  ['https://www.youtube.com/results?search_query=how+to+purge', 'how to purge', 'youtube', 'search'],
  ['https://m.youtube.com/results?search_query=edtwt', 'edtwt', 'youtube', 'search'],
  ['https://www.youtube.com/hashtag/selfharm', 'selfharm', 'youtube', 'tag'],
  ['https://www.youtube.com/watch?v=abc', null],
  ['https://en.wikipedia.org/w/index.php?search=Atomwaffen+Division&title=Special%3ASearch', 'Atomwaffen Division', 'wikipedia', 'search'],
  ['https://en.wikipedia.org/wiki/Special:Search?search=great+replacement&go=Go', 'great replacement', 'wikipedia', 'search'],
  ['https://en.wikipedia.org/wiki/Special:Search/suicide%20methods', 'suicide methods', 'wikipedia', 'search'],
  ['https://en.m.wikipedia.org/w/index.php?search=pro-ana', 'pro-ana', 'wikipedia', 'search'],
  ['https://en.wikipedia.org/w/api.php?action=opensearch&search=sewers&limit=10', 'sewers', 'wikipedia', 'suggest'],
  ['https://en.wikipedia.org/w/rest.php/v1/search/title?q=incel&limit=10', 'incel', 'wikipedia', 'suggest'],
  ['https://en.wikipedia.org/wiki/Suicide_Squad', null],
  ['https://www.tiktok.com/search?q=sewerslide&t=1700000000', 'sewerslide', 'tiktok', 'search'],
  ['https://www.tiktok.com/search/video?q=ana%20coach', 'ana coach', 'tiktok', 'search'],
  ['https://www.tiktok.com/tag/thinspo', 'thinspo', 'tiktok', 'tag'],
  ['https://www.tiktok.com/api/search/general/full/?aid=1988&keyword=kys', 'kys', 'tiktok', 'suggest'],
  ['https://www.tiktok.com/@someone/video/123', null],
  ['https://www.instagram.com/explore/tags/selfharm/', 'selfharm', 'instagram', 'tag'],
  ['https://www.instagram.com/explore/search/keyword/?q=%23proana', '#proana', 'instagram', 'search'],
  ['https://www.instagram.com/web/search/topsearch/?context=blended&query=thinspo', 'thinspo', 'instagram', 'suggest'],
  ['https://www.instagram.com/p/Cxyz/', null],
  ['https://search.brave.com/search?q=nangs', 'nangs', 'brave', 'search'],
  ['https://www.google.com/search?q=++', null],
  ['https://www.google.com/search?q=%E0%A4%A', '\ufffd%A', 'google', 'search'], // malformed escapes: replaced, never thrown
  ['https://example.org/search?q=suicide', null],
  ['not a url', null],
];

describe('search-term extraction', () => {
  it.each(CASES)('%s', (url, terms, engine, kind) => {
    const got = extractSearchFromUrl(url);
    expect(got?.terms ?? null).toBe(terms);
    if (terms !== null) expect(got).toEqual({ engine, terms, kind });
  });

  it('reads what filter/safesearch.ts read before it (removed with the wiring of issue 13)', () => {
    // What the old `searchTerms` returned for each, kept as data now that it is gone.
    const seen: Array<[string, string, string | null]> = [
      ['www.google.com', '/search?q=free+word', 'free word'], ['www.bing.com', '/images/search?q=a%20b', 'a b'], ['duckduckgo.com', '/?q=x', 'x'],
      ['www.youtube.com', '/results?search_query=y', 'y'], ['uk.search.yahoo.com', '/search?p=z', 'z'], ['www.ecosia.org', '/search?q=e', 'e'],
      ['www.qwant.com', '/?q=q', 'q'], ['yandex.ru', '/search?text=t', 't'], ['www.google.com', '/complete/search?q=c', 'c'], ['example.org', '/search?q=n', null],
    ];
    for (const [host, path, want] of seen) expect(extractSearch(host, path)?.terms ?? null, `${host}${path}`).toBe(want);
  });

  it('caps terms at 500 characters and collapses whitespace', () => {
    expect(extractSearch('www.google.com', `/search?q=${'a'.repeat(900)}`)?.terms).toHaveLength(500);
    expect(extractSearch('www.google.com', '/search?q=%20self%0A%09harm%20')?.terms).toBe('self harm');
  });
});
