import { describe, expect, it } from 'vitest';
import { fastNormalize, matchPath, normalizeHost, normalizeUrl, normalizeWithUrlParser, stripWww } from '../../blocklists/normalize';
import { isSchoolgateError } from '../../core/errors';
import { buildCorpus, rng } from '../../bench/lib/corpus';
import { need, sharedListsMissing, ut1 } from '../helpers/parts';

describe('normalizeUrl: every spelling of a URL becomes one', () => {
  const same = (variant: string, expected: string) => it(`${variant} -> ${expected}`, () => {
    expect(normalizeUrl(variant).href).toBe(expected);
  });
  same('HTTP://Example.COM/', 'http://example.com/');
  same('http://example.com./', 'http://example.com/');
  same('http://example.com.../a', 'http://example.com/a');
  same('http://user:secret@example.com/', 'http://example.com/');
  same('http://example.com:80/x', 'http://example.com/x');
  same('https://example.com:443/x', 'https://example.com/x');
  same('http://example.com:8080/x', 'http://example.com:8080/x');
  same('http://bücher.example/', 'http://xn--bcher-kva.example/');
  same('http://example。com/', 'http://example.com/');
  same('http://2130706433/', 'http://127.0.0.1/');
  same('http://0x7f000001/', 'http://127.0.0.1/');
  same('http://0177.0.0.1/', 'http://127.0.0.1/');
  same('http://0x7f.1/', 'http://127.0.0.1/');
  same('http://example.com/%7Euser/%41%62c', 'http://example.com/~user/Abc');
  same('http://example.com/a%2Fb%3F', 'http://example.com/a%2Fb%3F');
  same('http://example.com/a/./b/../c', 'http://example.com/a/c');
  same('http://example.com/a/%2e%2E/c', 'http://example.com/c');
  same('http://example.com\\a\\b', 'http://example.com/a/b');
  same('http://exa%6Dple.com/', 'http://example.com/');
  same('example.com/path', 'http://example.com/path');
  same('http://[::1]:8080/', 'http://[::1]:8080/');
  same('http://example.com/p?q=1#frag', 'http://example.com/p?q=1');

  it('keeps the parts apart', () => {
    expect(normalizeUrl('https://User@WWW.Example.com.:8443/A/../B?x=%41')).toEqual({
      scheme: 'https', host: 'www.example.com', port: 8443, path: '/B?x=A', href: 'https://www.example.com:8443/B?x=A',
    });
    expect(normalizeUrl('http://[2001:DB8::1]/').host).toBe('2001:db8::1');
  });

  it('accepts CONNECT authority-form targets', () => {
    expect(normalizeUrl('https://' + 'Example.com:443')).toMatchObject({ host: 'example.com', port: null, scheme: 'https' });
    expect(normalizeUrl('example.com:8443', { defaultScheme: 'https' })).toMatchObject({ host: 'example.com', port: 8443 });
  });

  it('throws SG_ERR_URL_INVALID on garbage, never anything else', () => {
    for (const bad of ['', '   ', 'http://', 'http://exa mple.com/', 'http://a..b/', 'http://999.1.1.1.1/', 'mailto:x@y', 'http://[::1/', 'http://%zz/']) {
      let err: unknown;
      try {
        normalizeUrl(bad);
      } catch (e) {
        err = e;
      }
      expect(isSchoolgateError(err, 'SG_ERR_URL_INVALID'), bad).toBe(true);
    }
  });
});

describe('normalizeHost', () => {
  it('normalises list hosts and refuses what cannot be one', () => {
    expect(normalizeHost('Example.COM.')).toBe('example.com');
    expect(normalizeHost('celsinho_v8.blogger.com.br')).toBe('celsinho_v8.blogger.com.br');
    expect(normalizeHost('bücher.de')).toBe('xn--bcher-kva.de');
    expect(normalizeHost('0x7f.0.0.1')).toBe('127.0.0.1');
    expect(normalizeHost('118.123.4.224')).toBe('118.123.4.224');
    expect(normalizeHost('[::1]')).toBe('::1');
    for (const bad of ['', 'a b.com', 'a/b', 'example.com:80', '*.example.com', 'a..b', 'x'.repeat(300), '1.2.3.4.5']) {
      expect(normalizeHost(bad), bad).toBeNull();
    }
  });
});

describe('squidGuard matching helpers', () => {
  it('strips one leading www/web/ftp[digits] label', () => {
    expect(stripWww('www.example.com')).toBe('example.com');
    expect(stripWww('web2.example.com')).toBe('example.com');
    expect(stripWww('ftp.example.com')).toBe('example.com');
    expect(stripWww('www2www.example.com')).toBe('www2www.example.com');
    expect(stripWww('wwwexample.com')).toBe('wwwexample.com');
  });
  it('matches paths case-insensitively, unescaped, with slashes collapsed', () => {
    expect(matchPath('/A%2Fb//C?Q=%41')).toBe('/a/b/c?q=a');
    expect(matchPath('/%E2%82%AC/%zz')).toBe('/€/%zz');
    // each of the three kinds of work alone, and none
    expect(matchPath('/Login')).toBe('/login');
    expect(matchPath('/a//b///c')).toBe('/a/b/c');
    expect(matchPath('/a%2F/b')).toBe('/a/b');
    const plain = '/already/plain?q=1';
    expect(matchPath(plain)).toBe(plain);
    // only ASCII is folded without an escape, as before (the lists hold ASCII paths)
    expect(matchPath('/É')).toBe('/É');
  });
});

describe('the fast path agrees with the URL parser', () => {
  it('on fuzzed URLs built from tricky pieces, whenever it answers at all', () => {
    const r = rng(2026);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
    const schemes = ['http://', 'https://', 'HTTP://', 'http:/', 'ftp://', ''];
    const hosts = ['example.com', 'EXAMPLE.com', 'a.b.c.example.org', 'localhost', 'xn--bcher-kva.example', 'XN--BCHER-KVA.example', '1.2.3.4', '0x7f.1', '017.0.0.1', 'a.1', 'a.0x1f', 'a..b', '.a.com', 'a.com.', 'ex_ample.com', 'user@host.com', '[::1]', '-a-.com', 'a'.repeat(64) + '.com', 'b.' + 'c'.repeat(63), 'bücher.de', 'a%2eb.com', ''];
    const ports = ['', ':80', ':443', ':8080', ':0', ':080', ':65535', ':65536', ':', ':99999', ':12a'];
    const paths = ['', '/', '/a/b', '/A/B.html', '/./a', '/a/../b', '/.well-known/x', '/a/.', '/%41%42', '/a b', "/it's", '/a\\b', '/a|b', '/a^b', '/{x}', '/a#frag', '/a?', '/a?q=1', '/a?q=/./x', "/a?q='x'", '/a?q=1&b=2#f', '/é', '//double//slash', '/a;b=c', '/~user/(x)*+,$!@:', '?x=1', '#x', '/\t/a'];
    let fast = 0;
    for (let i = 0; i < 20_000; i++) {
      const text = `${pick(schemes)}${pick(hosts)}${pick(ports)}${pick(paths)}${r() < 0.2 ? pick(paths) : ''}`;
      const f = fastNormalize(text);
      if (f === null) continue;
      fast++;
      expect(f, text).toEqual(normalizeWithUrlParser(text));
    }
    expect(fast).toBeGreaterThan(100);
  });

  it('on the differential corpus', async (ctx) => {
    if (need('shared lists', sharedListsMissing()) !== null) return ctx.skip();
    const corpus = buildCorpus(ut1, ['gambling', 'games', 'malware', 'phishing', 'publicite'], 20_000, 5);
    let fast = 0;
    for (const text of corpus) {
      const f = fastNormalize(text);
      if (f === null) continue;
      fast++;
      expect(f, text).toEqual(normalizeWithUrlParser(text));
    }
    expect(fast).toBeGreaterThan(corpus.length / 2);
  });
});
