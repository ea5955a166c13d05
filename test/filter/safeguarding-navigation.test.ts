import { describe, expect, it } from 'vitest';
import { classifyRequest, explainRequest, type HeaderBag, type KindRule, type RequestKind } from '../../filter/safeguarding/navigation';

// Header sets as the clients send them (captured from Chromium 126, Firefox 128, Safari 17 and 15,
// curl 8, Internet Explorer 8 and 11, an old Android WebView), trimmed to the headers that decide.
const CHROME_NAV_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7';
const CHROME_IMG_ACCEPT = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const FIREFOX_NAV_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/png,image/svg+xml,*/*;q=0.8';
const SAFARI_NAV_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const SAFARI_IMG_ACCEPT = 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
const IE8_NAV_ACCEPT = 'image/gif, image/jpeg, image/pjpeg, application/x-ms-application, application/xaml+xml, application/x-ms-xbap, */*';
const IE11_NAV_ACCEPT = 'text/html, application/xhtml+xml, image/jxr, */*';
const IE11_IMG_ACCEPT = 'image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5';

const meta = (dest: string, mode: string, site = 'cross-site', extra: HeaderBag = {}): HeaderBag => ({ 'sec-fetch-dest': dest, 'sec-fetch-mode': mode, 'sec-fetch-site': site, ...extra });

const CASES: Array<[string, string, HeaderBag, string, RequestKind, KindRule]> = [
  // Chromium
  ['Chromium: typed address', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('document', 'navigate', 'none'), 'sec-fetch-user': '?1', 'upgrade-insecure-requests': '1' }, '/search?q=x', 'navigation', 'fetch-metadata'],
  ['Chromium: link click', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('document', 'navigate', 'same-origin'), 'sec-fetch-user': '?1' }, '/page', 'navigation', 'fetch-metadata'],
  ['Chromium: form POST', 'POST', { accept: CHROME_NAV_ACCEPT, ...meta('document', 'navigate', 'same-origin'), 'content-type': 'application/x-www-form-urlencoded' }, '/login', 'navigation', 'fetch-metadata'],
  ['Chromium: favicon', 'GET', { accept: CHROME_IMG_ACCEPT, ...meta('image', 'no-cors', 'same-origin') }, '/favicon.ico', 'subresource', 'fetch-metadata'],
  ['Chromium: advert image', 'GET', { accept: CHROME_IMG_ACCEPT, ...meta('image', 'no-cors') }, '/ad/banner.gif', 'subresource', 'fetch-metadata'],
  ['Chromium: script', 'GET', { accept: '*/*', ...meta('script', 'no-cors') }, '/gtag/js?id=G-1', 'subresource', 'fetch-metadata'],
  ['Chromium: stylesheet', 'GET', { accept: 'text/css,*/*;q=0.1', ...meta('style', 'no-cors', 'same-origin') }, '/site.css', 'subresource', 'fetch-metadata'],
  ['Chromium: font', 'GET', { accept: '*/*', ...meta('font', 'cors') }, '/s/roboto.woff2', 'subresource', 'fetch-metadata'],
  ['Chromium: fetch() for search suggestions', 'GET', { accept: '*/*', ...meta('empty', 'cors', 'same-origin') }, '/complete/search?q=sel', 'subresource', 'fetch-metadata'],
  ['Chromium: sendBeacon', 'POST', { accept: '*/*', ...meta('empty', 'no-cors'), 'content-type': 'text/plain' }, '/collect', 'subresource', 'fetch-metadata'],
  ['Chromium: advert iframe', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('iframe', 'navigate') }, '/ads/frame.html', 'subresource', 'fetch-metadata'],
  ['Chromium: click inside an iframe', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('iframe', 'navigate'), 'sec-fetch-user': '?1' }, '/watch?v=1', 'navigation', 'fetch-metadata'],
  ['Chromium: link prefetch', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('document', 'navigate', 'none'), 'sec-purpose': 'prefetch' }, '/next', 'subresource', 'prefetch'],
  ['Chromium: prerender', 'GET', { accept: CHROME_NAV_ACCEPT, ...meta('document', 'navigate', 'same-origin'), 'sec-purpose': 'prefetch;prerender' }, '/next', 'subresource', 'prefetch'],
  ['Chromium: web app manifest', 'GET', { accept: '*/*', ...meta('manifest', 'cors', 'same-origin') }, '/manifest.json', 'subresource', 'fetch-metadata'],
  ['Chromium: CORS preflight', 'OPTIONS', { accept: '*/*', ...meta('empty', 'cors') }, '/api', 'subresource', 'method'],
  // Firefox
  ['Firefox: typed address', 'GET', { accept: FIREFOX_NAV_ACCEPT, ...meta('document', 'navigate', 'none'), 'sec-fetch-user': '?1' }, '/', 'navigation', 'fetch-metadata'],
  ['Firefox: image', 'GET', { accept: 'image/avif,image/webp,*/*', ...meta('image', 'no-cors') }, '/pixel', 'subresource', 'fetch-metadata'],
  ['Firefox: XHR', 'GET', { accept: 'application/json', ...meta('empty', 'cors', 'same-origin'), 'x-requested-with': 'XMLHttpRequest' }, '/api/items', 'subresource', 'fetch-metadata'],
  ['Firefox: old link prefetch (X-Moz)', 'GET', { accept: FIREFOX_NAV_ACCEPT, 'x-moz': 'prefetch' }, '/next', 'subresource', 'prefetch'],
  ['Firefox: <link rel=prefetch>', 'GET', { accept: '*/*', ...meta('empty', 'no-cors', 'same-origin'), 'sec-purpose': 'prefetch' }, '/next', 'subresource', 'prefetch'],
  // Safari 17 (fetch metadata) and Safari 15 (none)
  ['Safari 17: typed address', 'GET', { accept: SAFARI_NAV_ACCEPT, ...meta('document', 'navigate', 'none') }, '/', 'navigation', 'fetch-metadata'],
  ['Safari 17: image', 'GET', { accept: SAFARI_IMG_ACCEPT, ...meta('image', 'no-cors') }, '/a.png', 'subresource', 'fetch-metadata'],
  ['Safari 15: typed address', 'GET', { accept: SAFARI_NAV_ACCEPT }, '/search?q=x', 'navigation', 'accept-html'],
  ['Safari 15: image', 'GET', { accept: SAFARI_IMG_ACCEPT }, '/a', 'subresource', 'accept-other'],
  ['Safari 15: script', 'GET', { accept: '*/*' }, '/app.js?v=3', 'subresource', 'path'],
  ['Safari 15: favicon', 'GET', { accept: '*/*' }, '/favicon.ico', 'subresource', 'path'],
  ['Safari 15: jQuery XHR', 'GET', { accept: 'application/json, text/javascript, */*; q=0.01', 'x-requested-with': 'XMLHttpRequest' }, '/api', 'subresource', 'x-requested-with'],
  ['Safari 15: fetch() of JSON', 'GET', { accept: 'application/json' }, '/api/items', 'subresource', 'accept-other'],
  ['Safari 15: fetch() with */* (counted: documented)', 'GET', { accept: '*/*' }, '/api/items', 'navigation', 'default'],
  // curl and wget
  ['curl: a page', 'GET', { 'user-agent': 'curl/8.5.0', accept: '*/*' }, '/', 'navigation', 'default'],
  ['curl: an image', 'GET', { 'user-agent': 'curl/8.5.0', accept: '*/*' }, '/logo.png', 'subresource', 'path'],
  ['curl -I', 'HEAD', { 'user-agent': 'curl/8.5.0', accept: '*/*' }, '/', 'subresource', 'method'],
  ['curl: POST to an API', 'POST', { 'user-agent': 'curl/8.5.0', accept: '*/*', 'content-type': 'application/json' }, '/v1/events', 'subresource', 'method'],
  ['curl: the contract (Sec-Fetch-Dest: document only)', 'GET', { 'sec-fetch-dest': 'document' }, '/', 'navigation', 'fetch-metadata'],
  ['wget: a page, no Accept', 'GET', { 'user-agent': 'Wget/1.21.4' }, '/index.php', 'navigation', 'default'],
  // old clients
  ['Internet Explorer 8: page', 'GET', { accept: IE8_NAV_ACCEPT }, '/', 'navigation', 'default'],
  ['Internet Explorer 8: image', 'GET', { accept: '*/*' }, '/img/logo.gif', 'subresource', 'path'],
  ['Internet Explorer 11: page', 'GET', { accept: IE11_NAV_ACCEPT }, '/news', 'navigation', 'accept-html'],
  ['Internet Explorer 11: image', 'GET', { accept: IE11_IMG_ACCEPT }, '/i', 'subresource', 'accept-other'],
  ['Internet Explorer 11: stylesheet', 'GET', { accept: 'text/css, */*' }, '/s', 'subresource', 'accept-other'],
  ['old Android WebView: page (X-Requested-With names the app)', 'GET', { accept: SAFARI_NAV_ACCEPT, 'x-requested-with': 'com.example.schoolapp' }, '/', 'navigation', 'accept-html'],
  ['anything: an apple-touch-icon', 'GET', {}, '/apple-touch-icon-precomposed.png', 'subresource', 'path'],
  ['anything: .well-known', 'GET', {}, '/.well-known/openid-configuration', 'subresource', 'path'],
  ['anything: a PDF is a document', 'GET', {}, '/handbook.pdf', 'navigation', 'default'],
];

describe('classifyRequest', () => {
  it.each(CASES)('%s', (_name, method, headers, url, kind, rule) => {
    expect(explainRequest(method, headers, url)).toEqual({ kind, rule });
    expect(classifyRequest(method, headers, url)).toBe(kind);
  });

  it('takes an absolute URL, a path or a NormalizedUrl, and repeated headers as arrays', () => {
    expect(classifyRequest('GET', { accept: '*/*' }, 'https://example.org/favicon.ico?v=2')).toBe('subresource');
    expect(classifyRequest('GET', { accept: '*/*' }, 'https://example.org')).toBe('navigation');
    expect(classifyRequest('GET', { accept: '*/*' }, { path: '/x/site.CSS#top' })).toBe('subresource');
    expect(classifyRequest('GET', { accept: ['text/html', 'application/xhtml+xml'] }, '/a.png')).toBe('navigation');
    expect(classifyRequest('get', { 'sec-fetch-dest': 'DOCUMENT' }, '/')).toBe('navigation');
  });
});
