import { describe, expect, it } from 'vitest';
import { renderBlockPage, renderErrorPage, renderHostMismatchPage } from '../../filter/blockpage';

describe('block page', () => {
  const page = renderBlockPage({
    url: 'http://evil.test/"><script>alert(1)</script>',
    host: 'evil.test<img src=x onerror=alert(2)>',
    categoryName: 'Gambling/<b>Casino</b> games',
    at: new Date('2026-03-04T10:20:30Z'),
    reference: 'ref-"1"',
    token: 'tok"en',
    reportAction: 'http://127.0.0.1:8081/block/report',
  });

  it('escapes everything that came from the request', () => {
    expect(page).not.toContain('<script>');
    expect(page).not.toContain('<img');
    expect(page).not.toContain('<b>Casino');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page).toContain('value="tok&quot;en"');
    expect(renderErrorPage({ status: 502, code: 'X', title: '<t>', message: '<m>', detail: '<d>' })).not.toMatch(/<[tmd]>/);
    expect(renderHostMismatchPage({ tunnelHost: '<a>', hostHeader: '<b>' })).not.toMatch(/<[ab]>/);
  });

  it('says what was blocked, why, when, the reference, and offers both reports', () => {
    expect(page).toContain('<html lang="en">');
    expect(page).toContain('This page is blocked');
    expect(page).toContain('Gambling/&lt;b&gt;Casino&lt;/b&gt; games');
    expect(page).toContain('datetime="2026-03-04T10:20:30.000Z"');
    expect(page).toContain('Wednesday 04/03/2026 10:20:30 GMT'); // the school's zone (Europe/London by default), day/month/year
    expect(page).toContain('ref-&quot;1&quot;');
    expect(page.match(/<form method="post" action="http:\/\/127\.0\.0\.1:8081\/block\/report">/g)).toHaveLength(2);
    expect(page).toContain('name="type" value="self_report"');
    expect(page).toContain('name="type" value="unblock_request"');
    expect(page).toContain('This was accidental — report it to the safeguarding lead');
    expect(page).toContain('I think this should not be blocked');
    // every form control has a label
    for (const id of page.matchAll(/<textarea id="([^"]+)"/g)) expect(page).toContain(`<label for="${id[1]}">`);
  });

  it('calls only the illegal-content lists illegal and points only them to the IWF; adult content is legal', () => {
    const base = { url: 'http://x.test/', host: 'x.test', at: new Date(), reference: 'r', token: 't', reportAction: 'http://127.0.0.1:8081/block/report' };
    for (const categoryName of ['Pornography', 'Lingerie and swimwear', 'Gambling/Casino games']) {
      expect(renderBlockPage({ ...base, categoryName }), categoryName).not.toMatch(/illegal|IWF|Internet Watch Foundation/i);
      expect(renderBlockPage({ ...base, categoryName, illegal: false }), categoryName).not.toMatch(/illegal|IWF/i);
    }
    const iwf = renderBlockPage({ ...base, categoryName: 'IWF list', illegal: true });
    expect(iwf).toContain('illegal to view in the UK');
    expect(iwf).toContain('Internet Watch Foundation (IWF)');
  });
});
