import { describe, expect, it } from 'vitest';
import { renderSupportBanner, renderSupportText, SUPPORT_SERVICES } from '../../filter/safeguarding/support';

describe('support content', () => {
  it('names Childline, Samaritans and Shout with their numbers and sites', () => {
    const html = renderSupportBanner();
    expect(html).toContain('<a href="tel:08001111"');
    expect(html).toContain('0800 1111');
    expect(html).toContain('childline.org.uk');
    expect(html).toContain('<a href="tel:116123"');
    expect(html).toContain('116 123');
    expect(html).toContain('samaritans.org');
    expect(html).toMatch(/text SHOUT to <a href="sms:85258"[^>]*>85258<\/a>/);
    expect(html).not.toMatch(/<script|<link|<img|src=/i);
    expect(renderSupportText()).toBe(
      'Childline: call 0800 1111, https://www.childline.org.uk/ (free, any time, day or night)\n' +
        'Samaritans: call 116 123, https://www.samaritans.org/ (free, any time, day or night)\n' +
        'Shout: text SHOUT to 85258, https://giveusashout.org/ (free, any time, day or night)',
    );
    expect(Object.isFrozen(SUPPORT_SERVICES)).toBe(true);
  });

  it('escapes every string, and links only https, tel and sms addresses', () => {
    const html = renderSupportBanner({
      heading: '<b>hi</b> & "you"',
      schoolNote: "Talk to Mrs O'Neil <script>alert(1)</script>",
      services: [
        { name: '<i>Evil</i>', what: '"><img src=x onerror=alert(1)>', phone: { display: '<1>', tel: '123"onmouseover="x' }, web: 'javascript:alert(1)', hours: '&' },
        { name: 'Local', what: 'ok', web: 'https://example.org/?a=1&b="2"', hours: 'weekdays' },
      ],
    });
    expect(html).not.toMatch(/<script|<img|<i>|<b>|href="javascript|onmouseover="/);
    // a refused address is shown as text, not dropped silently
    expect(html).toContain('javascript:alert(1)');
    expect(html).toContain('&lt;b&gt;hi&lt;/b&gt; &amp; &quot;you&quot;');
    expect(html).toContain('Mrs O&#39;Neil &lt;script&gt;');
    expect(html).toContain('call &lt;1&gt;');
    expect(html).toContain('href="https://example.org/?a=1&amp;b=&quot;2&quot;"');
    expect(html).not.toContain('href="javascript');
  });
});
