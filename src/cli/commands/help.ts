/** `unum help [COMMAND]`: the command list, or one command's usage. */
import { UsageError, type Command } from '../context.ts';
import { closest } from '../../core/job-spec.ts';

export function helpCommand(commands: () => Record<string, Command>, mainUsage: () => string): Command {
  return {
    name: 'help',
    summary: 'Show help for unum or one of its commands',
    usage: `Usage: unum help [COMMAND]

Shows the list of commands, or the flags and examples of one command
(the same as "unum COMMAND --help").

Examples:
  unum help
  unum help run
`,
    async run(args, ctx) {
      const name = args.positionals[0];
      if (name === undefined) {
        ctx.stdout.write(mainUsage());
        return 0;
      }
      const all = commands();
      const command = all[name];
      if (!command) {
        const hint = closest(name, Object.keys(all));
        throw new UsageError(`unknown command "${name}"${hint ? `; did you mean "${hint}"?` : ''}`);
      }
      ctx.stdout.write(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
      return 0;
    },
  };
}
