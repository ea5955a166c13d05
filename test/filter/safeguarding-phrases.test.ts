import { describe, expect, it } from 'vitest';
import { compileMatcher } from '../../filter/safeguarding/matcher';
import { normalise } from '../../filter/safeguarding/normalise';
import { SAFEGUARDING_LISTS } from '../../filter/safeguarding/phrases';

// The shipped lists against what pupils really type: school work, films, games and sport must stay
// quiet; searches a DSL needs to see must fire, in the right list.
const matcher = compileMatcher(SAFEGUARDING_LISTS);

/** Everyday and school searches that share words with the lists. None may match. */
const QUIET = [
  // the brief's own
  'how to kill a process', 'shoot a basketball', 'drug trials history GCSE', 'the suicide squad', 'cutting a cake',
  // computing
  'kill process linux', 'how to kill a python script', 'kill -9 not working', 'git cut a release branch', 'how to execute a sql query', 'terminate a thread java', 'abort trap 6 mac',
  // sport and PE
  'how to shoot a netball', 'shooting drills football', 'how to shoot a free kick', 'how to tackle in rugby', 'boxing training for beginners', 'high jump technique', 'how to get high jump higher', 'fencing sword types', 'archery bow and arrow club',
  // science, health, PSHE
  'drugs in sport gcse pe', 'war on drugs history', 'classification of drugs science', 'what is the placebo effect in drug trials', 'paracetamol dosage for children', 'how many paracetamol can i take for a headache', 'effects of alcohol on the body pshe', 'what is anorexia nervosa biology', 'eating disorders awareness week', 'healthy eating plate', 'how to stop eating junk food', 'how to not eat so much sugar', 'how many calories in a banana', 'lethal dose of caffeine', 'how does cocaine affect the brain gcse biology', 'the effects of cannabis on the brain', 'what is ketamine used for in hospitals', 'laughing gas in chemistry', 'weed killer for the garden', 'how to get rid of weeds in the lawn', 'what is grooming in dogs', 'dog grooming near me', 'self esteem worksheet pshe', 'consent lesson ks3', 'what is cyberbullying', 'anti bullying week poster ideas', 'anti-bullying week 2024 theme', 'effects of being bullied essay', 'how to stop feeling hungry during ramadan', 'how to not feel hungry while fasting in ramadan', 'knife crime statistics london', 'knife skills cooking', 'how to sharpen a knife to a razor edge', 'bread knife', 'how to cut onions', 'how to cut a mango', 'starting to cut the grass', 'cut my hair short', 'i cut my finger what do i do', 'i burnt myself on the oven', 'i hurt myself playing football', 'scratching myself because of eczema', 'how to stop scratching myself at night eczema',
  // English, history, RE, sociology
  'romeo and juliet suicide scene analysis', 'durkheim suicide theory sociology', 'assisted suicide arguments gcse re', 'euthanasia and assisted suicide ethics', 'ophelia death hamlet', 'kamikaze pilots ww2 suicide missions', 'the rape of the lock analysis', 'of mice and men george shoots lennie', 'macbeth kills duncan', 'to kill a mockingbird summary', 'nazi germany propaganda gcse history', 'holocaust history ks3', 'what is the prevent duty', 'who were isis bbc bitesize', 'the crusades holy war', 'world war 1 weapons', 'battle of hastings weapons', 'the gunpowder plot 1605', 'anne frank diary summary', 'civil rights movement white supremacy history', 'what is extremism citizenship', 'the unexamined life is not worth living meaning', 'jihad meaning in islam gcse re', 'hajj pilgrimage', 'ramadan fasting rules', 'the great fire of london',
  // films, games, music
  'suicide squad cast', 'suicide squad 2 trailer', 'how to die in minecraft', 'ways to die in terraria', '1000 ways to die', 'how to get away with murder season 2', 'how to kill the ender dragon', 'how to kill someone in minecraft', 'how to make a bomb in minecraft', 'how to make tnt in minecraft', 'best guns in fortnite', 'how to get a gun in gta 5', 'buy a gun in gta online', 'nerf gun', 'how to make a paper gun', 'how to make a water bomb origami', 'white power ranger', 'mighty morphin white power ranger', 'hot chocolate bomb recipe', 'how to make a bath bomb', 'seed bombs for bees', 'photo bomb', 'cherry bomb lyrics', 'how to make lean muscle', 'lean beef recipes', 'how to get high score in flappy bird', 'how to get high marks in maths', 'how to get high grades in gcse', 'magic mushroom mario', 'stuffed mushrooms recipe', 'butterfly knife fade cs2', 'sugar baby watermelon seeds', 'suicidal tendencies band',
  // everyday
  'how to die my hair blue', 'how to die easter eggs', 'how to dye my hair pink', 'ed sheeran tickets', 'ana de armas films', 'hero in the story', 'my heroine essay', 'the old man and the sea', 'i am so tired of homework', 'my mum will kill me if i fail', 'killing myself laughing at this', 'this joke is killing me', 'i could kill for a pizza', 'dead tired', 'drop dead fred', 'coke and mentos experiment', 'can you mix coke and rum', 'charlie and the chocolate factory tickets', 'wedding dress shops', 'wed 14th march', 'how to jump off a cliff into water safely coasteering', 'if your friends jumped off a bridge', 'barcode scanner app', 'pencil sharpener for school', 'razor scooter', 'how to hang a picture', 'hang gliding', 'the purge film', 'how to purge cache chrome', 'hidden figures film', 'body check in ice hockey', 'bachelor of arts', 'bomb the exam meaning', 'i bombed my mock exam', 'school shooting drill', 'gun control laws usa', 'escort card wedding', 'ford escort', 'sugar free sweets', 'age of empires', 'how to roast a chicken', 'fight club film', 'expose to light photography', 'how to expose film', 'kys kentucky', 'how to get revenge in pokemon', 'is it bad to cut my own hair', 'does cutting your hair make it grow', 'how to make a bong sound in garageband',
];

/** Searches a DSL must see, with the list that must fire. */
const CONCERNING: Array<[string, string]> = [
  ['how to kill myself', 'suicide'], ['i want to die', 'suicide'], ['suicide', 'suicide'], ['suicide methods', 'suicide'], ['painless way to die', 'suicide'], ['how many paracetamol to die', 'suicide'], ['how to tie a noose', 'suicide'], ['i want to unalive myself', 'suicide'], ['sewerslide', 'suicide'], ['everyone would be better off without me', 'suicide'], ['i dont want to live anymore', 'suicide'], ['feeling suicidal', 'suicide'], ['suicide hotline uk', 'suicide'], ['sucide', 'suicide'], ['how to hang myself', 'suicide'], ['jump in front of a train', 'suicide'], ['lethal dose of paracetamol', 'suicide'], ['life is not worth living', 'suicide'], ['how to die', 'suicide'], ['romeo and juliet made me want to kill myself', 'suicide'],
  ['self harm', 'self_harm'], ['selfharm tips', 'self_harm'], ['how to hide self harm scars', 'self_harm'], ['i cut myself', 'self_harm'], ['how deep to cut', 'self_harm'], ['how to get the blade out of a sharpener', 'self_harm'], ['hide my cuts from parents', 'self_harm'], ['burning myself on purpose', 'self_harm'], ['i want to hurt myself', 'self_harm'], ['cutting my wrists', 'self_harm'], ['self-injury', 'self_harm'], ['barcode arms', 'self_harm'], ['shtwt', 'self_harm'],
  ['pro ana tips', 'eating_disorders'], ['thinspo', 'eating_disorders'], ['how to make myself throw up after eating', 'eating_disorders'], ['starving myself to lose weight', 'eating_disorders'], ['how to become anorexic', 'eating_disorders'], ['laxatives to lose weight', 'eating_disorders'], ['how to not feel hungry', 'eating_disorders'], ['abc diet', 'eating_disorders'], ['edtwt', 'eating_disorders'], ['thigh gap', 'eating_disorders'],
  ['how to join isis', 'extremism'], ['isis propaganda videos', 'extremism'], ['christchurch shooting video', 'extremism'], ['the great replacement', 'extremism'], ['white genocide', 'extremism'], ['atomwaffen division', 'extremism'], ['hitler did nothing wrong', 'extremism'], ['holocaust hoax', 'extremism'], ['terrorgram saints', 'extremism'], ['beheading video', 'extremism'], ['pressure cooker bomb', 'extremism'], ['kill all muslims', 'extremism'], ['blackpill', 'extremism'],
  ['where to buy weed', 'drugs'], ['how to roll a joint', 'drugs'], ['thc vape', 'drugs'], ['county lines job', 'drugs'], ['how much mdma', 'drugs'], ['how to get high', 'drugs'], ['household items to get high', 'drugs'], ['how to pass a drug test', 'drugs'], ['nitrous balloons', 'drugs'], ['k hole', 'drugs'], ['how to make lean', 'drugs'], ['snapchat plug', 'drugs'], ['buy xanax', 'drugs'],
  ['zombie knife', 'weapons'], ['buy a knife under 18', 'weapons'], ['how to make a bomb', 'weapons'], ['pipe bomb', 'weapons'], ['where to stab someone', 'weapons'], ['how to shoot up a school', 'weapons'], ['3d printed gun', 'weapons'], ['how to kill someone', 'weapons'], ['knuckle dusters', 'weapons'], ['take a knife to school', 'weapons'], ['acid attack', 'weapons'],
  ['sextortion', 'sexual_exploitation'], ['someone has my nudes', 'sexual_exploitation'], ['he is threatening to leak my nudes', 'sexual_exploitation'], ['should i send nudes', 'sexual_exploitation'], ['my boyfriend is older than me', 'sexual_exploitation'], ['older man messaging me', 'sexual_exploitation'], ['am i being groomed', 'sexual_exploitation'], ['sugar daddy app', 'sexual_exploitation'], ['how to make an onlyfans under 18', 'sexual_exploitation'], ['he touched me inappropriately', 'sexual_exploitation'], ['was i raped', 'sexual_exploitation'], ['im being blackmailed', 'sexual_exploitation'], ['get my nudes removed', 'sexual_exploitation'],
  ['im being bullied', 'bullying'], ['why does everyone hate me', 'bullying'], ['nobody likes me', 'bullying'], ['kys', 'bullying'], ['what does kys mean', 'bullying'], ['how to get revenge on a bully', 'bullying'], ['expose page', 'bullying'], ['how to make someone cry', 'bullying'], ['scared to go to school', 'bullying'], ['being cyberbullied', 'bullying'], ['rumours about me', 'bullying'],
  // evasions
  ['s u i c i d e', 'suicide'], ['s-u-i-c-i-d-e', 'suicide'], ['SUICIDE', 'suicide'], ['suiiiicide', 'suicide'], ['su1c1de', 'suicide'], ['k1ll myse1f', 'suicide'], ['kill my self', 'suicide'], ['ѕuicide', 'suicide'], ['sùïcídé', 'suicide'], ['sui\u200bcide', 'suicide'], ['s3lf h4rm', 'self_harm'], ['self-harm', 'self_harm'], ['#selfharm', 'self_harm'], ['selfharm', 'self_harm'], ['self_harm', 'self_harm'], ['$elf h@rm', 'self_harm'], ['pr0 4n4', 'eating_disorders'], ['th1nsp0', 'eating_disorders'], ['ｓｕｉｃｉｄｅ', 'suicide'], ['i want to d1e', 'suicide'],
];

describe('safeguarding phrase lists', () => {
  it.each(QUIET)('stays quiet on %j', (text) => {
    expect(matcher.matchAll(text).map((m) => `${m.category}: ${m.phrase}`)).toEqual([]);
  });

  it.each(CONCERNING)('fires on %j (%s)', (text, category) => {
    const all = matcher.matchAll(text);
    expect(all.map((m) => m.category)).toContain(category);
  });

  it('holds 25 to 60 phrases per list, each with a reason, and the shipped severity and banner', () => {
    const shape = Object.fromEntries(SAFEGUARDING_LISTS.map((l) => [l.category, [l.severity, l.supportBanner]]));
    expect(shape).toEqual({
      self_harm: ['alert', true], suicide: ['alert', true], eating_disorders: ['incident', true], extremism: ['alert', false],
      drugs: ['incident', false], weapons: ['incident', false], sexual_exploitation: ['alert', false], bullying: ['incident', false],
    });
    for (const list of SAFEGUARDING_LISTS) {
      expect(list.phrases.length, list.category).toBeGreaterThanOrEqual(25);
      expect(list.phrases.length, list.category).toBeLessThanOrEqual(60);
      expect(list.why.length).toBeGreaterThan(40);
      for (const p of list.phrases) expect(p.reason.trim().length, `${list.category}: ${p.text}`).toBeGreaterThan(5);
    }
  });

  it('fires every phrase and variant on its own words, in its own list, not cancelled by its own `unless`', () => {
    for (const list of SAFEGUARDING_LISTS) {
      for (const p of list.phrases) {
        for (const form of [p.text, ...(p.variants ?? [])]) {
          const hits = matcher.matchAll(form).filter((m) => m.category === list.category && m.phrase === p.text);
          expect(hits, `${list.category}: "${form}"`).toHaveLength(1);
        }
      }
    }
  });

  it('has no form twice across the lists, so a match names one phrase', () => {
    const seen = new Map<string, string>();
    const dupes: string[] = [];
    for (const list of SAFEGUARDING_LISTS) {
      for (const p of list.phrases) {
        for (const form of [p.text, ...(p.variants ?? [])]) {
          const n = normalise(form).replace(/ /g, '');
          const where = `${list.category}: ${p.text}`;
          const before = seen.get(n);
          if (before && before !== where) dupes.push(`${form} (${before} and ${where})`);
          seen.set(n, where);
        }
      }
    }
    expect(dupes).toEqual([]);
  });

  it('raises a threat to the school itself to an alert, though weapons are incidents', () => {
    expect(matcher.match('how to shoot up my school')).toMatchObject({ category: 'weapons', severity: 'alert' });
    expect(matcher.match('zombie knife')).toMatchObject({ category: 'weapons', severity: 'incident' });
  });
});
